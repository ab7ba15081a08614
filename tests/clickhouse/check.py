"""dist/clickhouse on real ClickHouse (chDB, embedded): the schema, fed
with events rstwall produced, and the README's queries.

    python3 check.py DIST_CLICKHOUSE_DIR EVENTS.jsonl

EVENTS.jsonl holds one fleet event message per line, as NATS carries
them. chDB's ClickHouse has no NATS table engine (see the README), so the
queue table is created as the schema says it, with ENGINE = Null instead
of NATS: an insert into it runs the materialized views exactly as a
message from NATS would. The NATS table's statement is still parsed
(formatQuery). Every event is inserted twice, as a replay after a broker
failure would deliver it. Prints one JSON document of the answers.
"""

import json
import re
import sys
import tempfile

from chdb import session


def statements(path):
    """(title, statement) pairs: a statement ends with a line ending in
    ';'; its title is the last comment line before it."""
    out, title, body = [], "", []
    for line in open(path):
        line = line.rstrip()
        if line.startswith("--"):
            title = line[2:].strip()
            continue
        body.append(line)
        if line.endswith(";"):
            out.append((title, "\n".join(body).strip().rstrip(";")))
            body = []
    return out


def rows(s, sql):
    return json.loads(str(s.query(sql, "JSON")))["data"]


def main(dist, events):
    with tempfile.TemporaryDirectory() as tmp:
        s = session.Session(tmp + "/db")
        nats = re.compile(r"ENGINE\s*=\s*NATS\b.*", re.S)
        for _, stmt in statements(dist + "/schema.sql"):
            if nats.search(stmt):
                # Parsed as written (formatQuery fails on a syntax error);
                # created with the Null engine.
                literal = stmt.replace("\\", "\\\\").replace("'", "\\'")
                s.query(f"SELECT formatQuery('{literal}')", "CSV")
                stmt = nats.sub("ENGINE = Null", stmt)
            s.query(stmt)
        columns = rows(s, "DESCRIBE TABLE rstwall_events_queue")
        structure = ", ".join(f"{c['name']} {c['type']}" for c in columns)
        for _ in range(2):
            s.query(
                "INSERT INTO rstwall_events_queue SELECT * FROM "
                f"file('{events}', 'JSONEachRow', '{structure}')"
            )
        answers = {
            "events": rows(s, "SELECT class, count() AS n FROM rstwall_events FINAL "
                              "GROUP BY class ORDER BY class"),
            "per_minute": rows(s, "SELECT class, uniqExactMerge(rsts) AS n "
                                  "FROM rstwall_rsts_per_minute GROUP BY class ORDER BY class"),
        }
        for title, query in statements(dist + "/queries.sql"):
            name = title.split(":")[0]
            answers[name] = rows(s, query)
            if name == "in_window":
                # The same question for the scenario's no-flow RSTs.
                answers["no_flow"] = rows(s, query.replace("'in_window'", "'no_flow'"))
        print(json.dumps(answers))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
