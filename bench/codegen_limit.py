"""The whole night with Spark's whole-stage method limit at its default (65535) and at HotSpot's JIT limit (8000), to
decide ``jobs.platform.spark.CODEGEN`` (issue 21).

Each run is a fresh process, as a nightly task or ``cpc backfill`` is: it starts a session with
``spark.sql.codegen.hugeMethodLimit`` set (``CPC_SPARK_CONF_JSON``, which wins over the code's default) and runs every
nightly stage for ``--date`` in order on the storage root (each stage replaces its own partitions of the date, as a
rerun does), timing each. The two limits take turns, ``--repeat`` times each, which goes first alternating, so the
machine's load falls on both alike. After each run the day's exported lists are hashed: the two limits must give
the same bytes, or the script stops. Spark runs in each process: run it alone, on a root a nightly has run on.

    .venv/bin/python bench/codegen_limit.py --date 2026-11-20 --repeat 2

Storage root from conf/env (``CPC_ROOT`` overrides). Prints the medians and writes ``bench/results/codegen_limit.json``
with the commit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LIMITS = ("65535", "8000")  # Spark's default (the largest valid Java method), HotSpot's HugeMethodLimit
NIGHT = """
import json, sys, time
from jobs.orchestration.pipeline import record
from jobs.orchestration.registry import NIGHTLY_NAMES, STAGES
from jobs.platform.config import settings
from jobs.platform.spark import get_spark
t0 = time.perf_counter()
cfg = settings()
spark = get_spark(cfg)
seconds = {"session": time.perf_counter() - t0}
for stage in NIGHTLY_NAMES:
    t = time.perf_counter()
    STAGES[stage](sys.argv[1], cfg)
    record(sys.argv[1], stage, cfg)
    seconds[stage] = time.perf_counter() - t
with open(sys.argv[2], "w") as out:  # a file, not standard output: the stages' own output goes there
    json.dump({"limit": spark.conf.get("spark.sql.codegen.hugeMethodLimit"), "seconds": seconds}, out)
"""


def lists_digest(exports: Path) -> str:
    """SHA-256 over the day's exported files, in path order (names and bytes)."""
    h = hashlib.sha256()
    for f in sorted(p for p in exports.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(exports)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def one_night(day: str, limit: str, exports: Path) -> dict:
    """A fresh process running the night with the limit: its stages' seconds, its wall and the lists' digest."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "CPC_SPARK_CONF_JSON": json.dumps({"spark.sql.codegen.hugeMethodLimit": limit})}
    with tempfile.TemporaryDirectory(prefix="codegen_limit_") as tmp:
        # A script file, not ``python -c``: pyspark.sql.connect takes a main module without a file for its own
        # doctests and exits the process (status 0) when a stage imports it.
        script, result = Path(tmp) / "night.py", Path(tmp) / "night.json"
        script.write_text(NIGHT)
        done = subprocess.run([sys.executable, str(script), day, str(result)], capture_output=True, text=True, cwd=ROOT, env=env)
        if done.returncode or not result.exists():
            raise SystemExit(f"codegen_limit: the night at {limit} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        figures = json.loads(result.read_text())
    if figures["limit"] != limit:
        raise SystemExit(f"codegen_limit: the session ran with {figures['limit']}, not {limit}")
    return {"seconds": {k: round(v, 2) for k, v in figures["seconds"].items()},
            "wall": round(time.perf_counter() - start, 2), "lists_sha256": lists_digest(exports)}


def main(argv: list[str] | None = None) -> dict:
    from bench.nightly_bench import write_result
    from jobs.platform.config import parse_date, settings
    from jobs.platform.provenance import git_state

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--date", required=True, help="a date the root has run (YYYY-MM-DD)")
    ap.add_argument("--repeat", type=int, default=2, help="nights each way (default 2)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/codegen_limit.json")
    args = ap.parse_args(argv)
    day, cfg, code = parse_date(args.date).isoformat(), settings(), git_state()
    exports = cfg.paths.root / "exports" / day
    runs: dict[str, list[dict]] = {limit: [] for limit in LIMITS}
    for i in range(args.repeat):
        for limit in (LIMITS if i % 2 == 0 else LIMITS[::-1]):
            runs[limit].append(one_night(day, limit, exports))
            print(f"codegen_limit: {limit} {runs[limit][-1]} (repeat {i + 1}/{args.repeat})", flush=True)
    digests = {r["lists_sha256"] for rs in runs.values() for r in rs}
    if len(digests) != 1:
        raise SystemExit(f"codegen_limit: the lists differ between runs: {sorted(digests)}")
    stages = list(runs[LIMITS[0]][0]["seconds"])
    median = {limit: {s: round(statistics.median(r["seconds"][s] for r in rs), 2) for s in stages}
              | {"wall": round(statistics.median(r["wall"] for r in rs), 2)} for limit, rs in runs.items()}
    ratio = {k: round(median[LIMITS[1]][k] / median[LIMITS[0]][k], 3) for k in median[LIMITS[0]] if median[LIMITS[0]][k]}
    result = write_result(args.out, {"date": day, "root": str(cfg.paths.root), "runs": runs, "median": median,
                                     "ratio_8000_over_65535": ratio, "lists_equal": True},
                          cfg, "bench/codegen_limit.py", sys.argv[1:] if argv is None else argv, code)
    print(f"codegen_limit: night {median[LIMITS[0]]['wall']}s at 65535, {median[LIMITS[1]]['wall']}s at 8000 "
          f"({ratio['wall']}x); score {ratio.get('score')}x, tags {ratio.get('tags')}x; the same lists -> {args.out}")
    return result


if __name__ == "__main__":
    main()
