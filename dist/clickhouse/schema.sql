-- rstwall's fleet events in ClickHouse: NATS -> MergeTree -> per-minute
-- aggregates. Run once with clickhouse-client --multiquery < schema.sql,
-- after setting nats_url below to your NATS servers.
--
-- Every rstwall publishes each RST event, as one JSON message, to
-- rstwall.<node>.events (see the README's fleet section). ClickHouse's
-- NATS engine subscribes to those subjects; a message that a node sent
-- again after a broker failure can arrive twice, so events are keyed by
-- (node, run, n), the message's place in its node's stream: the events
-- table collapses repeats (ReplacingMergeTree: query it with FINAL), and
-- the per-minute table counts distinct (run, n) pairs (uniqExact).

-- What NATS delivers: the message as rstwall writes it (schema 1).
CREATE TABLE IF NOT EXISTS rstwall_events_queue
(
    ts String,
    schema UInt32,
    node String,
    mode String,
    run UInt64,
    n UInt64,
    src String,
    dst String,
    sport UInt16,
    dport UInt16,
    seq UInt32,
    ack UInt32,
    flags String,
    class String,
    with_data Bool,
    verdict String,
    reason String,
    service_port UInt16,
    worker Nullable(UInt32),
    iface Nullable(String),
    direction Nullable(String),
    kernel Nullable(String),
    agreement Nullable(String),
    pid Nullable(UInt32),
    comm Nullable(String)
)
ENGINE = NATS
SETTINGS nats_url = 'nats-1.example:4222',
         nats_subjects = 'rstwall.*.events',
         nats_format = 'JSONEachRow',
         nats_queue_group = 'clickhouse-rstwall',
         input_format_skip_unknown_fields = 1;

-- Every event, once (after merges; FINAL at query time).
CREATE TABLE IF NOT EXISTS rstwall_events
(
    ts DateTime64(9, 'UTC'),
    node LowCardinality(String),
    mode LowCardinality(String),
    run UInt64,
    n UInt64,
    src IPv6,
    dst IPv6,
    sport UInt16,
    dport UInt16,
    seq UInt32,
    ack UInt32,
    flags LowCardinality(String),
    class LowCardinality(String),
    with_data Bool,
    verdict LowCardinality(String),
    reason LowCardinality(String),
    service_port UInt16,
    iface LowCardinality(String),
    direction LowCardinality(String),
    kernel LowCardinality(String),
    agreement LowCardinality(String),
    pid UInt32,
    comm LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (node, run, n)
TTL toDateTime(ts) + INTERVAL 30 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS rstwall_events_mv TO rstwall_events AS
SELECT
    parseDateTime64BestEffort(ts, 9, 'UTC') AS ts,
    node, mode, run, n,
    toIPv6(src) AS src,
    toIPv6(dst) AS dst,
    sport, dport, seq, ack, flags, class, with_data, verdict, reason, service_port,
    ifNull(iface, '') AS iface,
    ifNull(direction, '') AS direction,
    ifNull(kernel, '') AS kernel,
    ifNull(agreement, '') AS agreement,
    ifNull(pid, 0) AS pid,
    ifNull(comm, '') AS comm
FROM rstwall_events_queue;

-- Per minute, by node, class, service port and process (host mode's comm;
-- empty inline and on a tap): RSTs (distinct events) and their sources.
CREATE TABLE IF NOT EXISTS rstwall_rsts_per_minute
(
    minute DateTime('UTC'),
    node LowCardinality(String),
    class LowCardinality(String),
    service_port UInt16,
    comm LowCardinality(String),
    rsts AggregateFunction(uniqExact, UInt64, UInt64),
    sources AggregateFunction(uniqExact, IPv6)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, node, class, service_port, comm)
TTL minute + INTERVAL 400 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS rstwall_rsts_per_minute_mv TO rstwall_rsts_per_minute AS
SELECT
    toStartOfMinute(ts) AS minute,
    node, class, service_port, comm,
    uniqExactState(run, n) AS rsts,
    uniqExactState(src) AS sources
FROM rstwall_events
GROUP BY minute, node, class, service_port, comm;
