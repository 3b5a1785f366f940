"""Throwaway comparison: `logs stats` as DuckDB would answer it straight over the JSONL.

Not a dependency of the project; run it in a throwaway environment:

    uv run --no-project --with duckdb python bench/logs_duckdb.py PATH/TO/turns.jsonl [--runs 3]

It prints wall and CPU seconds (this process, all threads) for the group-by-tier query with
exact nearest-rank percentiles (quantile_disc), cold (the first run) and then repeated.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

QUERY = """
SELECT coalesce(tier, '-') AS k, count(*) AS turns, sum(prompt_tokens), sum(completion_tokens),
       sum(cost_cents), count(*) FILTER (WHERE cost_cents IS NULL) AS unpriced,
       quantile_disc(latency_ms, 0.5), quantile_disc(latency_ms, 0.95),
       count(*) FILTER (WHERE len(attempts) > 1), count(*) FILTER (WHERE status = 'error')
FROM read_ndjson('{path}', columns = {{'tier': 'VARCHAR', 'prompt_tokens': 'BIGINT', 'completion_tokens': 'BIGINT',
     'cost_cents': 'DOUBLE', 'latency_ms': 'DOUBLE', 'attempts': 'JSON[]', 'status': 'VARCHAR'}})
GROUP BY k ORDER BY turns DESC
"""


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("log")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import duckdb

    walls, cpus = [], []
    for _ in range(args.runs):
        conn = duckdb.connect()
        started, before = time.perf_counter(), cpu()
        rows = conn.execute(QUERY.format(path=args.log)).fetchall()
        walls.append(time.perf_counter() - started)
        cpus.append(cpu() - before)
        conn.close()
    print(f"duckdb {duckdb.__version__}: {len(rows)} groups, {sum(r[1] for r in rows):,} records")
    print(f"  wall s per run: {' '.join(f'{w:.2f}' for w in walls)} (median {statistics.median(walls):.2f})")
    print(f"  CPU s per run:  {' '.join(f'{c:.2f}' for c in cpus)} (median {statistics.median(cpus):.2f})")


if __name__ == "__main__":
    main()
