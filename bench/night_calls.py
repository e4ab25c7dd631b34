"""Where a night's driver time goes: every call from Python into Spark's JVM (py4j), counted and timed by the
pipeline's code that made it, stage by stage.

`bench/night_fixed_cost.py` showed that a night of a small operator is mostly fixed cost; its Spark jobs are only
part of it. On a few hundred customers nearly all of a stage's time is spent waiting on the JVM: planning the
stage's queries, running its small jobs, Delta's commits and log reads. This runs one night in a session already
warm (a first night, untimed, pays the JVM's warm-up) and records each py4j call with the two innermost frames of
the project's own code (``jobs/``) that led to it, so the table says which line of the pipeline waits on Spark
and how long in all (a call with no frame of ``jobs/`` on its thread's stack is counted as ``(outside
jobs/)``). The file kinds are ingested one at a time (two threads' calls would overlap in
time), so the ingest's seconds are those of a sequential ingest.

    CPC_ENV=test .venv/bin/python bench/night_fixed_cost.py      # prepares the root and runs the date
    CPC_ENV=test .venv/bin/python bench/night_calls.py

Needs a root whose run date has run (``--root``, default the one ``bench/night_fixed_cost.py`` leaves); writes
``bench/results/night_calls.json`` with the commit and prints the stages and the call sites that waited longest.
With ``--spark-jobs`` it also writes Spark's event log and tells the counted night's Spark jobs by kind and stage
(``bench/spark_jobs.py``).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import sys
import threading
import time
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROJECT = Path(__file__).resolve().parents[1]
OUTSIDE = "(outside jobs/)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("var/bench/night_fixed_cost"),
                    help="a storage root whose --date has run (default: what bench/night_fixed_cost.py leaves)")
    ap.add_argument("--date", type=dt.date.fromisoformat, default=dt.date(2026, 11, 20))
    ap.add_argument("--top", type=int, default=40, help="call sites kept in the result, by seconds (default 40)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/night_calls.json"))
    ap.add_argument("--spark-jobs", type=Path, nargs="?", const=Path("var/bench/night_calls_eventlog"), default=None,
                    metavar="DIR", help="also write Spark's event log (uncompressed) into DIR (default "
                    "var/bench/night_calls_eventlog, emptied first) and tell the counted night's Spark jobs by kind "
                    "and stage (bench/spark_jobs.py); the log's writing costs time, so the night's seconds are not "
                    "those of a run without it")
    return ap.parse_args(argv)


def site_of(frames, root: str, depth: int = 2) -> str:
    """The innermost ``depth`` frames under ``root``/jobs/ among ``frames`` ((file, line, function), innermost
    first), as ``path:line(function) <- ...``; ``OUTSIDE`` when there is none."""
    chain = [f"{file[len(root) + 1:]}:{line}({name})" for file, line, name in frames
             if file.startswith(f"{root}/jobs/")][:depth]
    return " <- ".join(chain) or OUTSIDE


class CallCounter:
    """Counts and times py4j's ``send_command`` by call site and by the stage set in ``stage``; puts it back on
    exit."""

    def __init__(self, root: str = str(PROJECT)):
        self.root, self.stage = root, None
        self.sites: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])
        self.stages: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])
        self._lock = threading.Lock()

    def __enter__(self):
        import py4j.clientserver as cs

        self._cls, self._orig = cs.ClientServerConnection, cs.ClientServerConnection.send_command
        orig, counter = self._orig, self

        def send_command(conn, command):
            t0 = time.perf_counter()
            try:
                return orig(conn, command)
            finally:
                counter.add(_frames(sys._getframe(1)), time.perf_counter() - t0)

        self._cls.send_command = send_command
        return self

    def add(self, frames, seconds: float) -> None:
        key = site_of(frames, self.root)
        with self._lock:
            for table, k in ((self.sites, key), (self.stages, self.stage)):
                table[k][0] += 1
                table[k][1] += seconds

    def __exit__(self, *exc):
        self._cls.send_command = self._orig


def _frames(frame, most: int = 200):
    out = []
    while frame is not None and len(out) < most:
        out.append((frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        frame = frame.f_back
    return out


def top(sites: dict[str, list], n: int) -> list[dict]:
    """The ``n`` call sites that waited longest, with their calls."""
    rows = sorted(sites.items(), key=lambda kv: -kv[1][1])[:n]
    return [{"site": k, "calls": v[0], "seconds": round(v[1], 3)} for k, v in rows]


def night(cfg, day: dt.date, counter: CallCounter | None = None, windows: list | None = None) -> list[dict]:
    """The nightly of ``day`` one stage at a time through ``pipeline.nightly`` (the stage, then its run-log row),
    each stage's wall seconds; ``windows`` (when given) gets each stage's (name, start, end) in epoch seconds."""
    from jobs.orchestration import pipeline
    from jobs.orchestration.registry import NIGHTLY_NAMES

    rows = []
    for stage in NIGHTLY_NAMES:
        if counter is not None:
            counter.stage = stage
        t0, start = time.perf_counter(), time.time()
        pipeline.nightly(day, cfg, from_stage=stage, to_stage=stage)
        rows.append({"stage": stage, "seconds": round(time.perf_counter() - t0, 2)})
        if windows is not None:
            windows.append((stage, start, time.time()))
    return rows


def with_event_log(folder: Path) -> None:
    """Spark's event log into ``folder`` (emptied), uncompressed, for the session this process starts: added to
    ``CPC_SPARK_CONF_JSON`` before the settings are read."""
    import json
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    extra = json.loads(os.environ.get("CPC_SPARK_CONF_JSON") or "{}")
    extra.update({"spark.eventLog.enabled": "true", "spark.eventLog.dir": str(folder.resolve()),
                  "spark.eventLog.compress": "false"})
    os.environ["CPC_SPARK_CONF_JSON"] = json.dumps(extra)


def spark_jobs(folder: Path, windows: list) -> dict:
    """The counted night's Spark jobs by stage and kind, read from the event log once the session has stopped
    (which flushes it)."""
    from bench import spark_jobs as sj
    from jobs.platform.spark import get_spark

    get_spark().stop()
    stages = sj.by_stage(sj.jobs(sj.log_lines(folder)), windows)
    print(sj.markdown({k: v for k, v in stages.items() if k != sj.OUTSIDE}))
    return {"event_log": str(folder), "stages": stages, "total": sj.total(stages)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    os.environ["CPC_ROOT"] = str(args.root.resolve())
    os.environ.setdefault("CPC_ENV", "test")
    if args.spark_jobs is not None:
        with_event_log(args.spark_jobs)
    from bench.nightly_bench import write_result
    from jobs.orchestration import pipeline
    from jobs.platform import logs
    from jobs.platform.config import settings
    from jobs.platform.provenance import git_state
    from jobs.stages import ingest

    logs.setup()
    code, cfg = git_state(), settings()
    if args.date not in pipeline.completed([args.date], cfg):
        print(f"{args.date} has not run in {cfg.paths.root}: run bench/night_fixed_cost.py first", file=sys.stderr)
        return 2
    ingest.workers_for = lambda spark, days, workers=None: 1  # one kind at a time: no two threads' calls overlap
    warm, windows = night(cfg, args.date), []
    with CallCounter() as counter:
        stages = night(cfg, args.date, counter, windows)
    for row in stages:
        row["calls"], row["seconds_in_calls"] = counter.stages[row["stage"]][0], round(counter.stages[row["stage"]][1], 2)
    total_calls = sum(v[0] for v in counter.sites.values())
    total_seconds = round(sum(v[1] for v in counter.sites.values()), 2)
    result = {"root": str(cfg.paths.root), "date": args.date.isoformat(), "env": os.environ["CPC_ENV"],
              "warm_night_seconds": round(sum(r["seconds"] for r in warm), 1),
              "night_seconds": round(sum(r["seconds"] for r in stages), 1), "calls": total_calls,
              "seconds_in_calls": total_seconds, "stages": stages, "sites": top(counter.sites, args.top)}
    if args.spark_jobs is not None:
        result["spark_jobs"] = spark_jobs(args.spark_jobs, windows)
    result = write_result(args.out, result, cfg, "bench/night_calls.py", argv, code)
    print(tabulate([(r["stage"], r["seconds"], r["calls"], r["seconds_in_calls"]) for r in stages],
                   headers=("stage", "seconds", "py4j calls", "seconds in them"), tablefmt="github"))
    print(tabulate([(r["site"], r["calls"], r["seconds"]) for r in result["sites"][:25]],
                   headers=("call site (jobs/)", "calls", "seconds"), tablefmt="github"))
    print(f"night {result['night_seconds']} s (the warm-up night {result['warm_night_seconds']} s), {total_calls:,} calls "
          f"into the JVM, {total_seconds} s in them -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
