"""What the class-data archive (``jobs/platform/jvm.py``) costs to build and saves a process, to decide which make
targets build it.

Times ``python -m jobs.platform.spark write-class-archive`` into a scratch file (the build ``make setup`` runs), then
a fresh process that starts a session and runs a small Delta workload (write, grouped read, merge) ``--repeat``
times with the archive and without it (moved aside for the run and put back), which goes first alternating.
Spark runs in each process: run it alone.

    .venv/bin/python bench/jvm_start.py --repeat 3

Prints the seconds and writes ``bench/results/jvm_start.json`` with the commit.
"""

from __future__ import annotations

import argparse
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

WORKLOAD = """
import json, shutil, sys, time
t0 = time.perf_counter()
from delta.tables import DeltaTable
from jobs.platform.config import settings
from jobs.platform.spark import get_spark
spark = get_spark(settings())
t1 = time.perf_counter()
path = sys.argv[1]
shutil.rmtree(path, ignore_errors=True)
spark.range(100000).selectExpr("id", "id % 7 as k").write.format("delta").save(path)
spark.read.format("delta").load(path).groupBy("k").count().collect()
new = spark.read.format("delta").load(path)
DeltaTable.forPath(spark, path).alias("t").merge(new.alias("s"), "t.id = s.id").whenMatchedUpdateAll().execute()
print(json.dumps({"session": t1 - t0, "total": time.perf_counter() - t0}))
"""


def one_process(scratch: Path) -> dict:
    """A fresh Python process: a session and the workload; its seconds (session start, total) and the wall."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", WORKLOAD, str(scratch / "delta")], check=True, capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    return {k: round(v, 2) for k, v in {**figures, "wall": time.perf_counter() - start}.items()}


def build_seconds(scratch: Path) -> float:
    """The seconds of the build ``make setup`` runs, into a scratch file (the project's archive is not touched)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jobs.platform.spark", "write-class-archive", str(scratch / "a.jsa")],
                   check=True, capture_output=True, cwd=ROOT)
    return round(time.perf_counter() - start, 1)


def main(argv: list[str] | None = None) -> dict:
    from bench.nightly_bench import write_result
    from jobs.platform import jvm
    from jobs.platform.provenance import git_state

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="processes each way (default 3)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/jvm_start.json")
    args = ap.parse_args(argv)
    code, archive = git_state(), jvm.archive_path()
    if archive is None or not archive.exists():
        raise SystemExit(f"no class-data archive at {archive}: run `make setup` first")
    with tempfile.TemporaryDirectory(prefix="jvm_start_") as tmp:
        scratch = Path(tmp)
        build = build_seconds(scratch)
        print(f"jvm_start: the archive built in {build}s", flush=True)
        runs: dict[str, list[dict]] = {"with": [], "without": []}
        for i in range(args.repeat):
            for way in (("with", "without") if i % 2 == 0 else ("without", "with")):
                if way == "without":
                    archive.rename(archive.with_suffix(".off"))
                try:
                    runs[way].append(one_process(scratch))
                finally:
                    if way == "without":
                        archive.with_suffix(".off").rename(archive)
                print(f"jvm_start: {way} the archive {runs[way][-1]} (repeat {i + 1}/{args.repeat})", flush=True)
    med = {way: statistics.median(r["wall"] for r in rs) for way, rs in runs.items()}
    saved = med["without"] - med["with"]
    result = write_result(args.out, {
        "build_seconds": build, "runs": runs, "wall_median": med, "saved_per_process": round(saved, 2),
        "processes_to_repay_the_build": round(build / saved, 1) if saved > 0 else None,
    }, None, "bench/jvm_start.py", sys.argv[1:] if argv is None else argv, code)
    print(f"jvm_start: build {build}s; a process {med['with']:.1f}s with the archive, {med['without']:.1f}s without -> {args.out}")
    return result


if __name__ == "__main__":
    main()
