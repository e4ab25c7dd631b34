"""The whole night one way and another, taking turns in one warm Spark session: a setting or a code path that must
change no result, and whose cost only the night as a whole can tell (issue 21).

Every nightly stage for ``--date`` runs in order on the storage root, as ``cpc nightly`` runs them (each stage
replaces its own partitions of the date, as a rerun does), timing each; one night each way per round, ``--repeat``
rounds, which way goes first alternating, after one untimed night (the session's own way) that warms it. So each
stage's two figures come from the same warm process and the machine's load falls on both alike. After every night
the day's published lists and tables are read as ``bench/compare_runs.py`` reads them (the lists' bytes through
their links, each table cell for cell; ``gold.customer_tags`` of the date, not its every snapshot): every night
must give the same, or the script stops. Spark runs here: run it alone, on a root a nightly has run on.

    .venv/bin/python bench/night_ab.py codegen_limit --date 2026-11-20 --repeat 2   (bench/codegen_limit.py)

The switches (:data:`SWITCHES`):

- ``codegen_limit``: Spark's whole-stage method limit (``spark.sql.codegen.hugeMethodLimit``) at its default 65535
  and at HotSpot's JIT limit 8000 (not adopted: docs/benchmarks.md, "Whole-stage methods over the JIT's limit");
- ``parallel_writes`` (at 168d6d0 only): a stage's independent Delta writes one after another, or side by side on
  threads (``lake.replace_all`` there: the score stage's four tables, the evaluation's two). The night took 0.99x
  as long side by side (``bench/results/parallel_writes.json``), so the change was taken out with its switch
  (docs/benchmarks.md, "Delta writes side by side").

Storage root and Spark from conf/env (``CPC_ROOT`` overrides). Prints the medians and writes
``bench/results/<switch>.json`` with the commit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class Switch:
    """Two ways, the first the code's default; ``set(spark, way)`` puts one in place; ``current(spark)`` is the
    session's way before the bench (put back at the end)."""
    ways: tuple[str, str]
    set: Callable[[object, str], None]
    current: Callable[[object], str]


CODEGEN_KEY = "spark.sql.codegen.hugeMethodLimit"


def _set_codegen(spark, way: str) -> None:
    spark.conf.set(CODEGEN_KEY, way)  # read when a query is planned, so it can change between queries


SWITCHES: dict[str, Switch] = {
    # Spark's default (the largest valid Java method), HotSpot's HugeMethodLimit
    "codegen_limit": Switch(("65535", "8000"), _set_codegen, lambda spark: spark.conf.get(CODEGEN_KEY)),
}


def outputs(root: Path, day) -> dict:
    """The day's lists and tables as ``bench/compare_runs.py`` reads them, but ``gold.customer_tags`` of every
    snapshot date (``@all``: the nightly writes only the day's)."""
    from bench import compare_runs

    return {"lists": compare_runs.lists(root, day.isoformat()),
            "tables": {k: v for k, v in compare_runs.tables(root, day.isoformat()).items() if not k.endswith("@all")}}


def one_night(spark, cfg, day, switch: Switch, way: str) -> dict:
    """Every nightly stage of ``day`` with ``way`` in place, each as ``cpc nightly`` runs it (``pipeline.nightly``
    one stage at a time): each stage's seconds, the night's, and the day's :func:`outputs`."""
    from jobs.orchestration import pipeline
    from jobs.orchestration.registry import NIGHTLY_NAMES

    switch.set(spark, way)
    seconds = {}
    for stage in NIGHTLY_NAMES:
        t = time.perf_counter()
        pipeline.nightly(day, cfg, stage, stage)
        seconds[stage] = round(time.perf_counter() - t, 2)
    return {"seconds": seconds, "night": round(sum(seconds.values()), 2), **outputs(cfg.paths.root, day)}


def medians(runs: dict[str, list[dict]]) -> dict:
    first = next(iter(runs.values()))[0]["seconds"]
    return {way: {**{s: round(statistics.median(r["seconds"][s] for r in rs), 2) for s in first},
                  "night": round(statistics.median(r["night"] for r in rs), 2)} for way, rs in runs.items()}


def differing(warm: dict, runs: dict[str, list[dict]]) -> list[str]:
    """What differs from the warm-up night's outputs, night by night: ``<way> #<n>: <list or table>``."""
    out = []
    for way, rs in runs.items():
        for i, r in enumerate(rs, 1):
            out += [f"{way} #{i}: {k}" for part in ("lists", "tables") for k in sorted({*warm[part], *r[part]})
                    if warm[part].get(k) != r[part].get(k)]
    return out


def main(argv: list[str] | None = None) -> dict:
    from bench.nightly_bench import write_result
    from jobs.platform.config import parse_date, settings
    from jobs.platform.provenance import git_state
    from jobs.platform.spark import get_spark

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("switch", choices=sorted(SWITCHES), help="what the two ways differ in")
    ap.add_argument("--date", required=True, help="a date the root has run (YYYY-MM-DD)")
    ap.add_argument("--repeat", type=int, default=3, help="nights each way (default 3)")
    ap.add_argument("--out", type=Path, help="default bench/results/<switch>.json")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    switch, out = SWITCHES[args.switch], args.out or ROOT / "bench" / "results" / f"{args.switch}.json"
    day, cfg, code = parse_date(args.date), settings(), git_state()
    spark = get_spark(cfg)
    own = switch.current(spark)
    warm = one_night(spark, cfg, day, switch, own)
    print(f"{args.switch}: warm-up night ({own}): {warm['night']}s", flush=True)
    runs: dict[str, list[dict]] = {way: [] for way in switch.ways}
    for i in range(args.repeat):
        for way in (switch.ways if i % 2 == 0 else switch.ways[::-1]):
            runs[way].append(one_night(spark, cfg, day, switch, way))
            print(f"{args.switch}: {way} {runs[way][-1]['seconds']} night {runs[way][-1]['night']}s "
                  f"(round {i + 1}/{args.repeat})", flush=True)
    switch.set(spark, own)
    if bad := differing(warm, runs):
        raise SystemExit(f"{args.switch}: the outputs differ from the warm-up night's: {'; '.join(bad[:10])}")
    median = medians(runs)
    a, b = switch.ways
    ratio = {k: round(median[b][k] / median[a][k], 3) for k in median[a] if median[a][k]}
    result = write_result(out, {"switch": args.switch, "date": day.isoformat(), "root": str(cfg.paths.root),
                                "session_default": own, "warm_up": warm, "runs": runs, "median": median,
                                f"ratio_{b}_over_{a}": ratio, "outputs_equal": True}, cfg, "bench/night_ab.py",
                          sys.argv[1:] if argv is None else argv, code)
    print(f"{args.switch}: night {median[a]['night']}s {a}, {median[b]['night']}s {b} ({ratio['night']}x); "
          + ", ".join(f"{s} {ratio.get(s)}x" for s in ("ingest", "tags", "score", "export", "evaluate"))
          + f"; the same lists and tables -> {out}")
    return result


if __name__ == "__main__":
    main()
