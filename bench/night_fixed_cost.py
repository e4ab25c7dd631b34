"""The fixed cost of a night: the nightly's stages on a small operator, in one warm session, by stage.

Issue 21 says each night "pays fixed overhead per file and per stage". On a few hundred customers the data is
nothing, so what a stage takes is that overhead: Spark jobs started (each a plan, a schedule, tasks), Delta
commits (each a snapshot update, a file listing, a commit and its checksum), reads of Delta logs. It is also what
the test suite pays for every nightly it runs (`make test`: 300 customers). This prints, for each stage of the
nightly of the run date, the seconds, the Spark jobs it started and its Delta writes (``lake.replace`` and
``lake.append`` calls, the stage's ``ops.run_log`` row among them) with the seconds spent inside them (the written
frame's own computation included; ingest runs two file kinds at a time, so its writes' seconds can overlap),
``--repeat`` times in one session, and the median night; then the cost of one small Delta write alone (a 300-row
table partitioned by date, one partition replaced, ``--writes`` times) to compare the writes' seconds with.

    CPC_ENV=test .venv/bin/python bench/night_fixed_cost.py

The operator (``--customers``, ``--days`` up to the run date 2026-11-20, the environment's seed and profile) is
generated into ``--root`` (emptied), its history loaded and the two days before the run date run as ``make run``'s
warm-up runs them (``simulator.warmup``: each nightly after the simulated responses to the lists before it, and
the run date's responses), all untimed: so the timed nightlies ingest responses and evaluate outcomes, as the
test suite's warm-up test and a real night do. Writes ``bench/results/night_fixed_cost.json`` with the commit. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RUN_DATE = dt.date(2026, 11, 20)
WARMUP_DAYS = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=300, help="simulated customers (default 300, the test suite's)")
    ap.add_argument("--days", type=int, default=6, help="days of files up to the run date (default 6; at least 3)")
    ap.add_argument("--repeat", type=int, default=3, help="timed nightlies of the run date (default 3)")
    ap.add_argument("--writes", type=int, default=10, help="small Delta writes timed alone (default 10)")
    ap.add_argument("--root", type=Path, default=Path("var/bench/night_fixed_cost"), help="storage root (emptied)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/night_fixed_cost.json"))
    args = ap.parse_args(argv)
    if args.days < 3 or args.repeat < 1 or args.writes < 2:
        ap.error("--days at least 3, --repeat at least 1, --writes at least 2")
    return args


class WriteCounter:
    """Counts and times ``lake.replace`` / ``lake.append`` calls by the stage running (the module's functions
    replaced while it is active, put back on exit)."""

    def __init__(self, lake):
        self.lake, self.stage = lake, "-"
        self.calls, self.seconds = collections.Counter(), collections.Counter()
        self.lock = threading.Lock()  # ingest writes from two threads

    def _wrap(self, fn):
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                with self.lock:
                    self.calls[self.stage] += 1
                    self.seconds[self.stage] += time.perf_counter() - t0
        return timed

    def __enter__(self):
        self.saved = self.lake.replace, self.lake.append
        self.lake.replace, self.lake.append = self._wrap(self.saved[0]), self._wrap(self.saved[1])
        return self

    def __exit__(self, *exc):
        self.lake.replace, self.lake.append = self.saved


def jobs_counter(spark):
    """Spark jobs started so far in the session (``bench/tags_breakdown.py``'s counters: the DAG scheduler's,
    the status tracker's when it cannot be read)."""
    from bench.tags_breakdown import spark_counters

    counters = spark_counters(spark)
    return lambda: int(counters()["jobs"])


def stage_rows(spark, cfg, day: dt.date, counter: WriteCounter) -> list[dict]:
    """One nightly of ``day``, stage by stage: seconds, Spark jobs, Delta writes and their seconds."""
    from jobs.orchestration import pipeline
    from jobs.orchestration.registry import NIGHTLY_NAMES

    jobs_started = jobs_counter(spark)
    rows = []
    for stage in NIGHTLY_NAMES:
        counter.stage = stage
        jobs, t0 = jobs_started(), time.perf_counter()
        pipeline.nightly(day, cfg, from_stage=stage, to_stage=stage)  # the stage, then its run-log row
        rows.append({"stage": stage, "seconds": round(time.perf_counter() - t0, 2), "spark_jobs": jobs_started() - jobs,
                     "delta_writes": counter.calls[stage], "write_seconds": round(counter.seconds[stage], 2)})
    counter.calls.clear()
    counter.seconds.clear()
    return rows


def small_writes(spark, folder: Path, n: int) -> dict:
    """One date partition of a 300-row Delta table replaced ``n`` times (the first untimed): seconds and Spark jobs
    of each (every tenth commit also writes a Delta checkpoint)."""
    shutil.rmtree(folder, ignore_errors=True)
    jobs_started = jobs_counter(spark)
    rows = [(RUN_DATE - dt.timedelta(days=i % 28), i, "x") for i in range(300)]
    df = spark.createDataFrame(rows, "snapshot_date date, id int, s string")
    df.write.format("delta").partitionBy("snapshot_date").save(str(folder))
    seconds, jobs = [], []
    for i in range(n + 1):
        day = (RUN_DATE - dt.timedelta(days=i % 28)).isoformat()
        j0, t0 = jobs_started(), time.perf_counter()
        (df.where(f"snapshot_date = '{day}'").write.format("delta").mode("overwrite").partitionBy("snapshot_date")
         .option("replaceWhere", f"snapshot_date = '{day}'").save(str(folder)))
        if i:
            seconds.append(round(time.perf_counter() - t0, 3))
            jobs.append(jobs_started() - j0)
    shutil.rmtree(folder, ignore_errors=True)
    return {"seconds": seconds, "spark_jobs": jobs, "median_seconds": round(statistics.median(seconds), 3),
            "median_spark_jobs": statistics.median(jobs)}


def prepare(cfg, args) -> None:
    """The operator's files, its history and the warm-up's two nightlies before the run date, with the simulated
    responses (untimed)."""
    from jobs.orchestration import pipeline
    from simulator import warmup
    from simulator.generate import SimSpec, generate

    shutil.rmtree(args.root, ignore_errors=True)
    spec = SimSpec(args.customers, args.days, RUN_DATE, int(cfg.sample["seed"]), str(cfg.sample["profile"]))
    generate(cfg.paths, spec, progress=False)
    pipeline.history(RUN_DATE - dt.timedelta(days=WARMUP_DAYS), cfg)
    warmup.run(WARMUP_DAYS, cfg, models=False)


FIGURES = ("seconds", "spark_jobs", "delta_writes", "write_seconds")


def median_night(repeats: list[list[dict]]) -> list[dict]:
    """Each stage's median over the repeats, figure by figure, and the night's (the median of the repeats' sums)."""
    stages = [r["stage"] for r in repeats[0]]
    rows = [{"stage": st, **{k: statistics.median(rep[i][k] for rep in repeats) for k in FIGURES}} for i, st in enumerate(stages)]
    night = {"stage": "night", **{k: statistics.median(round(sum(r[k] for r in rep), 2) for rep in repeats) for k in FIGURES}}
    return [*rows, night]


def table(repeats: list[list[dict]]) -> str:
    out = []
    for i, rows in enumerate(repeats, 1):
        out += [(i, r["stage"], r["seconds"], r["spark_jobs"], r["delta_writes"], r["write_seconds"]) for r in rows]
        out.append((i, "night", *(round(sum(r[k] for r in rows), 2) for k in FIGURES)))
    if len(repeats) > 1:
        out += [("median", *(r[k] for k in ("stage", *FIGURES))) for r in median_night(repeats)]
    return tabulate(out, headers=("repeat", "stage", "seconds", "Spark jobs", "Delta writes", "their seconds"), tablefmt="github")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    args.root = args.root.resolve()
    os.environ["CPC_ROOT"] = str(args.root)
    os.environ.setdefault("CPC_ENV", "test")
    from bench.nightly_bench import write_result
    from jobs.platform import lake, logs
    from jobs.platform.config import Paths, settings
    from jobs.platform.provenance import git_state
    from jobs.platform.spark import get_spark

    logs.setup()
    code, cfg = git_state(), settings()
    cfg = dataclasses.replace(cfg, paths=Paths(args.root), sample={**cfg.sample, "end_date": RUN_DATE.isoformat()})
    t0 = time.perf_counter()
    prepare(cfg, args)
    prepared = round(time.perf_counter() - t0, 1)
    spark = get_spark(cfg)
    with WriteCounter(lake) as counter:
        repeats = [stage_rows(spark, cfg, RUN_DATE, counter) for _ in range(args.repeat)]
    writes = small_writes(spark, args.root / "small_write", args.writes)
    write_result(args.out, {"customers": args.customers, "days": args.days, "run_date": RUN_DATE.isoformat(),
                            "env": os.environ["CPC_ENV"], "profile": cfg.sample["profile"], "prepare_seconds": prepared,
                            "repeats": repeats, "median": median_night(repeats), "small_write": writes},
                 cfg, "bench/night_fixed_cost.py", argv, code)
    print(table(repeats))
    print(f"one small Delta write (replace one partition, 300 rows): median {writes['median_seconds']} s, "
          f"{writes['median_spark_jobs']} Spark jobs; each: {writes['seconds']} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
