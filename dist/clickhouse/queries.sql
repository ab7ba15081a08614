-- The README's queries over dist/clickhouse/schema.sql; each ends with ';'
-- and starts with its one-line title (checked by tests/clickhouse/check.py).

-- refused: which services refused most connections across the fleet this hour
SELECT
    service_port,
    uniqExactMerge(rsts) AS refused,
    arraySort(groupUniqArray(node)) AS nodes
FROM rstwall_rsts_per_minute
WHERE class = 'refused' AND minute >= now() - INTERVAL 1 HOUR
GROUP BY service_port
ORDER BY refused DESC, service_port
LIMIT 10;

-- in_window: where did in-window RSTs arrive (today), by node, destination and port
SELECT
    node,
    IPv6NumToString(dst) AS destination,
    service_port,
    count() AS rsts,
    uniqExact(src) AS sources,
    min(ts) AS first,
    max(ts) AS last
FROM rstwall_events FINAL
WHERE class = 'in_window' AND ts >= now() - INTERVAL 1 DAY
GROUP BY node, dst, service_port
ORDER BY rsts DESC, node, destination, service_port
LIMIT 20;

-- processes: which processes' sockets got most RSTs, by class (host mode), this hour
SELECT
    comm,
    class,
    uniqExactMerge(rsts) AS rsts
FROM rstwall_rsts_per_minute
WHERE comm != '' AND minute >= now() - INTERVAL 1 HOUR
GROUP BY comm, class
ORDER BY rsts DESC
LIMIT 20;
