"""Where the score stage's time goes: ``jobs.stages.cpc.run`` on a root whose date has run, with every
``localCheckpoint`` (the points where the stage's lazy frames are computed: the candidates, the decision's steps,
the assignment's passes) and every Delta write timed where it happens, in one warm session.

    .venv/bin/python bench/score_parts.py --root var/bench/20000x90 --date 2026-11-20

The stage runs ``--repeat`` times after one untimed warm-up (it rewrites the same day's rows: a rerun gives the same
result). Each event is named by the function and line that asked for it (a checkpoint also by its frame's columns:
two on one line are told apart), in the order they happened; a site reached several times in one run (the
assignment's passes) is summed. What is in neither a checkpoint nor a write
is the stage's small reads and counts (the product-channel table, fingerprints, the price passes' counts) and the
driver's own work. The result (best run: the one with the shortest stage) goes to ``bench/results/score_parts.json``
with the commit (docs/benchmarks.md, "Where a 20,000-customer score stage's time goes").
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tabulate import tabulate  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PROJECT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path("var/bench/20000x90"),
                   help="a storage root whose --date has run (default: what make bench leaves at 20,000 customers)")
    p.add_argument("--date", type=dt.date.fromisoformat, default=dt.date(2026, 11, 20))
    p.add_argument("--repeat", type=int, default=2, help="timed runs after the warm-up (the shortest is kept)")
    p.add_argument("--out", type=Path, default=RESULTS / "score_parts.json")
    return p.parse_args(argv)


def site(frame) -> str:
    """``file:line(function)`` of the innermost frame under jobs/, from ``frame`` outwards."""
    while frame is not None and not frame.f_code.co_filename.startswith(f"{PROJECT}/jobs/"):
        frame = frame.f_back
    if frame is None:
        return "(outside jobs/)"
    return f"{frame.f_code.co_filename[len(str(PROJECT)) + 6:]}:{frame.f_lineno}({frame.f_code.co_name})"


class Timer:
    """Times ``localCheckpoint`` by call site and ``lake.replace`` by table while in use; puts both back on exit."""

    def __init__(self):
        self.events: list[list] = []

    def add(self, name: str, seconds: float) -> None:
        for e in self.events:
            if e[0] == name:
                e[1], e[2] = e[1] + seconds, e[2] + 1
                return
        self.events.append([name, seconds, 1])

    def __enter__(self):
        from pyspark.sql.classic.dataframe import DataFrame

        from jobs.platform import lake

        self._ckpt, self._replace = DataFrame.localCheckpoint, lake.replace
        timer, ckpt, replace = self, self._ckpt, self._replace

        def local_checkpoint(df, *a, **k):
            where, t0 = site(sys._getframe(1)), time.perf_counter()
            try:
                return ckpt(df, *a, **k)
            finally:
                timer.add(f"checkpoint {where} [{len(df.columns)} columns]", time.perf_counter() - t0)

        def lake_replace(df, paths, table, *a, **k):
            t0 = time.perf_counter()
            try:
                return replace(df, paths, table, *a, **k)
            finally:
                timer.add(f"write {table}", time.perf_counter() - t0)

        DataFrame.localCheckpoint, lake.replace = local_checkpoint, lake_replace
        return self

    def __exit__(self, *exc):
        from pyspark.sql.classic.dataframe import DataFrame

        from jobs.platform import lake

        DataFrame.localCheckpoint, lake.replace = self._ckpt, self._replace


def one_run(spark, paths, day: dt.date) -> dict:
    """The stage once, timed: its seconds, its events in order, what is in none of them."""
    from jobs.stages import cpc

    t0 = time.perf_counter()
    with Timer() as timer:
        summary = cpc.run(spark, paths, day)
    seconds = time.perf_counter() - t0
    events = [{"event": n, "seconds": round(s, 2), "times": k} for n, s, k in timer.events]
    return {"seconds": round(seconds, 2), "events": events,
            "elsewhere_seconds": round(seconds - sum(e["seconds"] for e in events), 2), "summary": summary}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    os.environ["CPC_ROOT"] = str(args.root.resolve())
    os.environ.setdefault("CPC_ENV", "local")
    from bench.nightly_bench import write_result
    from jobs.orchestration import pipeline
    from jobs.platform import logs
    from jobs.platform.config import settings
    from jobs.platform.provenance import git_state
    from jobs.platform.spark import get_spark
    from jobs.stages import cpc

    logs.setup()
    code, cfg = git_state(), settings()
    if args.date not in pipeline.completed([args.date], cfg):
        print(f"{args.date} has not run in {cfg.paths.root}: run make bench (or the nightly) first", file=sys.stderr)
        return 2
    spark = get_spark()
    cpc.run(spark, cfg.paths, args.date)  # warm-up, untimed
    runs = [one_run(spark, cfg.paths, args.date) for _ in range(max(1, args.repeat))]
    best = min(runs, key=lambda r: r["seconds"])
    result = write_result(args.out, {"root": str(cfg.paths.root), "date": args.date.isoformat(), "env": os.environ["CPC_ENV"],
                                     "best": best, "runs_seconds": [r["seconds"] for r in runs]},
                          cfg, "bench/score_parts.py", argv, code)
    rows = [(e["event"], e["times"], e["seconds"]) for e in best["events"]]
    rows.append(("(in neither: small reads, counts, the price passes' counts, the driver)", "", best["elsewhere_seconds"]))
    print(tabulate(rows, headers=("event (in order)", "times", "seconds"), tablefmt="github"))
    print(f"score stage {best['seconds']} s (runs: {result['runs_seconds']}) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
