"""Great Expectations on the ingest's frames: one BASIC run (the ingest before) against BOOLEAN_ONLY first and
BASIC only when the suite fails (``quality.validate`` now), per file kind, on a storage root's bronze rows.

Issue 21 names the ingest's validation as fixed cost paid per file kind. ``jobs/stages/ingest/quality.py`` runs
each suite with Great Expectations' BOOLEAN_ONLY result first, whose expectations compute only their success,
and again with BASIC (which also asks every expectation for a sample of its unexpected values, a Spark query
each) only when the suite fails, for the unexpected counts the ledger keeps. This times both on the same frames
in one session: each kind's accepted rows of ``--date`` (``bronze.<kind>``, the suite's columns, cached and
counted first), each way once untimed, then both ``--repeat`` times, which of them goes first alternating, and
checks that they give the same summary. Accepted rows pass their suite, so this times a clean delivery (the usual
night); a failing suite's summary is checked by ``tests/test_ingest.py``. Nothing is written to the root.

    .venv/bin/python bench/validation_formats.py --root var --date 2026-11-20

Prints a table and writes ``bench/results/validation_formats.json`` with the commit.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("var"), help="a storage root `make run` filled (default var)")
    ap.add_argument("--date", required=True, type=dt.date.fromisoformat, help="the delivery date whose rows are validated")
    ap.add_argument("--repeat", type=int, default=4, help="timed runs of each way per kind (default 4)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/validation_formats.json"))
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat at least 1")
    return args


def one_basic_run(kind: str, df) -> dict:
    """``quality.validate`` as it was: the suite run once with the BASIC result, whether it passes or fails."""
    from jobs.stages.ingest import quality

    result = quality._gx_validation(kind).run(batch_parameters={"dataframe": df}, result_format=quality.RESULT_FORMAT)
    return quality.summarise(kind, result)


def summary(kind: str, rows: int, basic: list[float], now: list[float], same: bool) -> dict:
    """One kind's row: the medians of both ways and their ratio."""
    b, n = statistics.median(basic), statistics.median(now)
    return {"kind": kind, "rows": rows, "basic_seconds": [round(x, 3) for x in basic],
            "now_seconds": [round(x, 3) for x in now], "basic_median": round(b, 3), "now_median": round(n, 3),
            "basic_over_now": round(b / n, 2) if n else None, "same_summary": same}


def totals(rows: list[dict]) -> dict:
    """The kinds' medians added up, as a night validates them (one after another: the ingest's lock)."""
    b = sum(r["basic_median"] for r in rows)
    n = sum(r["now_median"] for r in rows)
    return {"basic_seconds": round(b, 2), "now_seconds": round(n, 2), "basic_over_now": round(b / n, 2) if n else None,
            "same_summary": all(r["same_summary"] for r in rows)}


def timed(fn) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def measure(spark, paths, kind: str, day: dt.date, repeat: int) -> dict:
    from jobs.platform import lake
    from jobs.stages.ingest import quality
    from schemas import FILES

    df = lake.read(spark, paths, f"bronze.{kind}").where(lake.in_dates("delivery_date", [day]))
    df = df.select(*FILES[kind].names).cache()
    rows = df.count()
    one_basic_run(kind, df)  # each way once untimed: the kind's validation definition built, its plans warm
    quality.validate(kind, df)
    basic, now, same = [], [], True
    for i in range(repeat):  # alternately first: BASIC, now; now, BASIC; ...
        ways = [("basic", lambda: one_basic_run(kind, df)), ("now", lambda: quality.validate(kind, df))]
        got = dict((name, timed(fn)) for name, fn in (ways if i % 2 == 0 else ways[::-1]))
        basic.append(got["basic"][0])
        now.append(got["now"][0])
        same = same and got["basic"][1] == got["now"][1]
    df.unpersist()
    row = summary(kind, rows, basic, now, same)
    print(f"validation formats {kind}: {rows:,} rows, BASIC {row['basic_median']:.2f} s, now {row['now_median']:.2f} s",
          flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    os.environ["CPC_ROOT"] = str(args.root.resolve())
    os.environ.setdefault("CPC_ENV", "local")
    from bench.nightly_bench import write_result
    from jobs.platform import logs
    from jobs.platform.config import settings
    from jobs.platform.provenance import git_state
    from jobs.platform.spark import get_spark
    from schemas import FILE_ORDER

    logs.setup()
    code, cfg = git_state(), settings()
    spark = get_spark(cfg, app_name="cpc-bench-validation")
    rows = [measure(spark, cfg.paths, kind, args.date, args.repeat) for kind in FILE_ORDER]
    result = write_result(args.out, {"root": str(cfg.paths.root), "date": args.date.isoformat(), "env": os.environ["CPC_ENV"],
                                     "repeat": args.repeat, "kinds": rows, "total": totals(rows)},
                          cfg, "bench/validation_formats.py", argv, code)
    print(tabulate([(r["kind"], r["rows"], r["basic_median"], r["now_median"], r["basic_over_now"], r["same_summary"])
                    for r in rows], headers=("kind", "rows", "BASIC s", "now s", "BASIC / now", "same"), tablefmt="github"))
    t = result["total"]
    print(f"the kinds added up: BASIC {t['basic_seconds']} s, now {t['now_seconds']} s, {t['basic_over_now']}x; "
          f"same summaries: {t['same_summary']} -> {args.out}")
    return 0 if t["same_summary"] else 1


if __name__ == "__main__":
    sys.exit(main())
