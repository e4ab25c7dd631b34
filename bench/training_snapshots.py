"""Training's tag snapshots: one pass (``tags.snapshots``, what training runs) against the tags stage run for each
date in turn (``tags.run``, what training ran before), on copies of an existing storage root, in one session.

Issue 21 asks that training's tag snapshots cost less (``make run`` spent about 4 minutes of its training on
them: four tags stages, one per snapshot date). This times both ways on the same lake for the snapshot dates of
a training as of ``--as-of`` (conf/models.yaml: four dates, a week and a month apart), and checks that they write
the same rows (every tag and customer; ``exceptAll`` both ways). The root is copied twice into ``--scratch``
(nothing is written to it), the dates' partitions of ``gold.customer_tags`` are removed from both copies, and so
are the tag states up to the last date (the date-by-date way then bootstraps each date, as training did in
``make run``: no state before them). The two ways run in the order one pass, date by date, one pass again (the first run of a session also pays the JVM's
warm-up; the repeat brackets it).

    .venv/bin/python bench/training_snapshots.py --root var --as-of 2026-11-16

Prints a table and writes ``bench/results/training_snapshots.json`` with the commit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TABLE = "gold.customer_tags"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("var"), help="a storage root `make run` filled (default var)")
    ap.add_argument("--as-of", required=True, type=dt.date.fromisoformat, help="the training date whose snapshots are timed")
    ap.add_argument("--scratch", type=Path, default=Path("var/bench/training_snapshots"), help="where the copies go (emptied)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/training_snapshots.json"))
    return ap.parse_args(argv)


def copies(root: Path, scratch: Path) -> dict[str, Path]:
    """Two copies of the root's lake and its phone-number hashing key (the tags hash with it), one for each way."""
    shutil.rmtree(scratch, ignore_errors=True)
    out = {}
    for name in ("one_pass", "date_by_date"):
        target = scratch / name
        shutil.copytree(root / "lake", target / "lake", symlinks=True)
        if (root / "secrets").exists():
            shutil.copytree(root / "secrets", target / "secrets")
        out[name] = target
    return out


def drop_dates(spark, paths, days: list[dt.date]) -> None:
    """The dates' snapshots removed, and the tag states before the last of them (a root that trained before
    holds the states its snapshots wrote: the date-by-date way would step from them, which training on a lake
    without them, as in ``make run``, cannot)."""
    from delta.tables import DeltaTable

    from jobs.platform import lake
    from jobs.stages.tags import incremental

    DeltaTable.forPath(spark, str(paths.table(TABLE))).delete(lake.in_dates("snapshot_date", days))
    for table in (incremental.STATE_TABLE, incremental.STATE_LOG):
        if lake.exists(spark, paths, table):
            DeltaTable.forPath(spark, str(paths.table(table))).delete(f"state_date <= DATE '{max(days).isoformat()}'")


def timed(label: str, fn) -> dict:
    t0 = time.perf_counter()
    fn()
    seconds = round(time.perf_counter() - t0, 1)
    print(f"training snapshots: {label}: {seconds} s", flush=True)
    return {"way": label, "seconds": seconds}


def differences(spark, a, b, days: list[dt.date]) -> dict:
    from jobs.platform import lake

    left = lake.read(spark, a, TABLE).where(lake.in_dates("snapshot_date", days))
    right = lake.read(spark, b, TABLE).where(lake.in_dates("snapshot_date", days))
    return {"rows": left.count(), "only_one_pass": left.exceptAll(right).count(), "only_date_by_date": right.exceptAll(left).count()}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    os.environ["CPC_ROOT"] = str(args.root.resolve())
    os.environ.setdefault("CPC_ENV", "local")
    from bench.nightly_bench import write_result
    from jobs.platform import logs
    from jobs.platform.config import Paths, settings
    from jobs.platform.provenance import git_state
    from jobs.platform.spark import get_spark
    from jobs.stages import tags
    from models import propensity as pm

    logs.setup()
    code, cfg = git_state(), settings()
    days = pm.load_settings().snapshot_dates(args.as_of)
    roots = copies(cfg.paths.root, args.scratch)
    one, each = Paths(roots["one_pass"]), Paths(roots["date_by_date"])
    spark = get_spark(cfg, app_name="cpc-training-snapshots")
    for p in (one, each):
        drop_dates(spark, p, days)
    runs = [timed("one pass", lambda: tags.snapshots(spark, one, days)),
            timed("date by date", lambda: [tags.run(spark, each, d, stats=False) for d in days]),
            timed("one pass (again)", lambda: tags.snapshots(spark, one, days))]
    diff = differences(spark, one, each, days)
    best = min(r["seconds"] for r in runs if r["way"].startswith("one pass"))
    result = write_result(args.out, {
        "root": str(cfg.paths.root), "as_of": args.as_of.isoformat(), "dates": [d.isoformat() for d in days],
        "runs": runs, "date_by_date_over_one_pass": round(runs[1]["seconds"] / best, 2), "equal": diff,
    }, cfg, "bench/training_snapshots.py", argv, code)
    print(tabulate([(r["way"], r["seconds"]) for r in runs], headers=("way", "seconds"), tablefmt="github"))
    print(f"date by date / one pass (its best): {result['date_by_date_over_one_pass']}x; rows {diff['rows']}, "
          f"differences {diff['only_one_pass']} + {diff['only_date_by_date']} -> {args.out}")
    shutil.rmtree(args.scratch, ignore_errors=True)
    return 0 if diff["only_one_pass"] == diff["only_date_by_date"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
