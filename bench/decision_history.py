"""How the score stage's reads of its own past decisions grow with the days of operation, and what writing each
day's decisions by outcome saves (:func:`by_outcome`).

    .venv/bin/python bench/decision_history.py --root var/bench/20000x90 [--date 2026-11-20] [--days 1 30 90]

Three readers of the score stage filter ``gold.cpc_decisions`` on ``outcome = 'contact'`` over a window of past
days (``jobs.stages.cpc.inputs``): ``history`` (the longest of the policy's frequency window and the campaigns'
repeat windows), ``product_channel_table`` (conf/channels.yaml ``product_channel_fit.history_days``) and
``acceptance_scales`` (conf/policy.yaml ``learning.calibration_days``). The table holds every decision row
(contacts, placements, holdouts, not chosen), of which contacts are a few per cent.

The root's ``gold.cpc_decisions`` is only read: the rows of ``--date`` (default: the table's latest date) are
copied, unchanged but for ``snapshot_date``, to the N days before it (``--days``), in a scratch lake
(``--scratch``) whose other tables are symbolic links to the root's, so that ``Paths(<scratch>)`` sees the real
bronze, silver and gold tables (the evaluate stage's outputs excepted: the scratch lake writes its own). For
each N (largest first) and each layout, a fresh table is written, the layouts differing only in how each day's
rows are spread over its files:

    as_written  as the source day's files (one partition each): the score stage's own layout, whatever it is
    by_outcome  ``by_outcome(df, files)``: ``spark.sql.shuffle.partitions`` files ranged by outcome, so most
                hold one outcome and Delta's min/max statistics let a reader of contacts skip the others
    mixed       ``df.repartition(files)``: as many files, each holding every outcome (no skipping possible)

Then each reader is called ``--repeat`` times with ``--date`` as the run date (``history`` counted; the other
two return Python values), in wall seconds, and the evaluate stage (``jobs.stages.evaluate.run``: outcomes
rebuilt and written, with the evaluation and the report, in the scratch lake), the nightly's other cost that
grows with the days of decisions, twice: ``evaluate`` rebuilds the outcomes of every decision date of the
lookback (no evaluation of the night before), ``evaluate_night`` is a night after the night before was evaluated
(untimed), which rebuilds only the dates that can have changed (jobs/stages/evaluate/rebuild.py; each copied
day's contact_refs are its own, so the day's responses name only their own decisions, as on real days). The first repeat after each write is cold for the Delta logs (their
cache is cleared with the table; the nightly's per-stage task is a fresh process too); compare the minimums.
The readers' other inputs (``bronze.contacts``, ``bronze.orders``, ``bronze.responses``) are the same in every
case. Beside the seconds, each case records from the table's Delta log (the ``deltalake`` package, no Spark): its data
files and rows, and the files (and their rows) whose statistics do not rule out ``outcome = 'contact'``, which
Delta must read (over the whole table; each reader's date window prunes partitions on top of that).

Writes ``--out`` (default ``bench/results/decision_history.json``) after every case and prints a table as it goes.
The scratch lake is removed at the end unless ``--keep``. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.nightly_bench import save  # noqa: E402
from bench.tags_breakdown import _repeat_count as _at_least_one  # noqa: E402  (at least 1, or a clear error)

RESULT = Path(__file__).resolve().parent / "results" / "decision_history.json"
TABLE = "gold.cpc_decisions"
LAYOUTS = ("as_written", "by_outcome", "mixed")
READERS = ("history", "product_channel_table", "acceptance_scales", "evaluate", "evaluate_night")
# Tables the scratch lake holds itself (never links): the one written here, and the evaluate stage's outputs.
OWN = (("gold", "cpc_decisions"), ("gold", "campaign_outcomes"), ("gold", "campaign_eval"), ("gold", "trial_funnel"),
       ("ops", "evaluate_log"))
NEEDED = (TABLE, "bronze.orders", "bronze.contacts")  # what the three readers read without looking first
MARKER = ".decision_history"  # in a scratch lake this script made: only such a folder is ever removed


# ---------------------------------------------------------------------------------------------------------
# Pure parts: the arguments, the Delta log's files and statistics, the scratch lake
# ---------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, type=Path,
                    help=f"a storage root whose lake holds {TABLE} with at least one date (e.g. var/bench/20000x90)")
    ap.add_argument("--date", type=dt.date.fromisoformat, default=None,
                    help=f"the decision date copied, and the run date of the reads (default: the latest in {TABLE})")
    ap.add_argument("--days", type=_at_least_one, nargs="+", default=[1, 30, 90],
                    help="days of history written before --date, one table each (default: 1 30 90)")
    ap.add_argument("--repeat", type=_at_least_one, default=2, help="calls of each reader per table (default 2)")
    ap.add_argument("--out", type=Path, default=RESULT, help="the result (JSON; default: bench/results/decision_history.json)")
    ap.add_argument("--scratch", type=Path, default=None,
                    help="the scratch storage root (default: <root>/scratch/decision_history); removed at the end")
    ap.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS),
                    help=f"the layouts written, in order (default: {' '.join(LAYOUTS)})")
    ap.add_argument("--keep", action="store_true", help="keep the scratch lake (the last table written in it)")
    args = ap.parse_args(argv)
    if args.scratch is None:
        args.scratch = args.root / "scratch" / "decision_history"
    args.days = sorted(set(args.days), reverse=True)  # largest first
    return args


def may_hold(lo: str | None, hi: str | None, nulls: int | None, rows: int | None, value: str) -> bool:
    """Whether Delta's data skipping must read a file for ``column = value``, from the file's statistics of that
    column (least, greatest, nulls, rows; None: not recorded): yes without statistics; no when every value is
    null; else ``lo <= value <= hi``."""
    if lo is None or hi is None:
        return not (rows is not None and nulls == rows)
    return lo <= value <= hi


def file_counts(table_dir: Path, column: str = "outcome", value: str = "contact") -> dict:
    """The table's data files and rows, and those of the files Delta must read for ``column = value``
    (:func:`may_hold`), from the current snapshot's add actions as the ``deltalake`` package reads them (its log,
    checkpoints included; no Spark). Rows are None when a file has no statistics."""
    import pyarrow as pa
    from deltalake import DeltaTable

    adds = pa.table(DeltaTable(str(table_dir)).get_add_actions(flatten=True)).to_pylist()
    holding = [a for a in adds if may_hold(a.get(f"min.{column}"), a.get(f"max.{column}"), a.get(f"null_count.{column}"),
                                           a.get("num_records"), value)]

    def rows(of: list[dict]) -> int | None:
        counts = [a.get("num_records") for a in of]
        return None if None in counts else sum(counts)

    return {"files": len(adds), f"files_with_{value}": len(holding), "rows": rows(adds),
            f"rows_in_files_with_{value}": rows(holding)}


def check_scratch(root: Path, scratch: Path) -> None:
    """Refuse a scratch folder that is the root, holds it, or lies in its lake; or a folder this script did not
    make (it is emptied at the start and removed at the end)."""
    root, scratch = root.resolve(), scratch.resolve()
    if scratch == root or scratch in root.parents or scratch.is_relative_to(root / "lake"):
        raise SystemExit(f"--scratch {scratch}: must be apart from {root} and its lake")
    if scratch.exists() and any(scratch.iterdir()) and not (scratch / MARKER).exists():
        raise SystemExit(f"--scratch {scratch}: exists, not empty and not made by this script: choose another")


def scratch_lake(root: Path, scratch: Path, skip: tuple[tuple[str, str], ...] = OWN) -> Path:
    """A fresh storage root at ``scratch`` whose lake links every table folder of ``root/lake/<layer>/<table>``
    but those of ``skip`` (symbolic links to the real folders; the layers are real folders, so a table written there
    stays in the scratch lake). Returns ``scratch``."""
    check_scratch(root, scratch)
    if scratch.exists():
        shutil.rmtree(scratch)  # ours (the marker): links are removed, never followed
    (scratch / "lake" / "gold").mkdir(parents=True)
    (scratch / MARKER).write_text("made by bench/decision_history.py; removed by it\n")
    for layer in sorted(p for p in (root / "lake").iterdir() if p.is_dir()):
        for table in sorted(p for p in layer.iterdir() if p.is_dir()):
            if (layer.name, table.name) not in skip:
                link = scratch / "lake" / layer.name / table.name
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(table.resolve(), target_is_directory=True)
    return scratch


def fresh_table(paths, scratch: Path) -> Path:
    """The scratch lake's table folder, removed; refused unless it is a real folder inside ``scratch``."""
    path = Path(paths.table(TABLE))
    if path.is_symlink() or not path.resolve().is_relative_to(scratch.resolve()):
        raise RuntimeError(f"{path}: not the scratch lake's own {TABLE}: refusing to write there")
    if path.exists():
        shutil.rmtree(path)
    return path


# ---------------------------------------------------------------------------------------------------------
# Spark: the day's rows, the tables written, the readers timed
# ---------------------------------------------------------------------------------------------------------
def source_rows(spark, paths, day: dt.date | None):
    """The decision rows of ``day`` (default: the table's latest date), kept in the session (read once from
    the root), and that date."""
    from pyspark.sql import functions as F

    from jobs.platform import lake

    table = lake.read(spark, paths, TABLE)
    day = day or table.agg(F.max("snapshot_date")).first()[0]
    if day is None:
        raise SystemExit(f"{paths.table(TABLE)}: no decision date")
    rows = table.where(F.col("snapshot_date") == F.lit(day)).withColumn("_file", F.col("_metadata.file_path")).localCheckpoint()
    return rows, day


def shifted(rows, day: dt.date, n: int):
    """``rows`` copied to each of the ``n`` days before ``day`` (``snapshot_date`` = day - 1 ... day - n), each copy's
    ``contact_ref`` suffixed with ``~<days ago>`` so that, as on real days, the responses to the day's contacts
    name that day's decisions only."""
    from pyspark.sql import functions as F

    return (rows.withColumn("_ago", F.explode(F.sequence(F.lit(1), F.lit(n))))
            .withColumn("snapshot_date", F.date_sub(F.lit(day), F.col("_ago")))
            .withColumn("contact_ref", F.concat("contact_ref", F.lit("~"), F.col("_ago").cast("string"))).select(*rows.columns))


def by_outcome(rows, files: int):
    """``rows`` range-partitioned on (outcome, customer_id) into ``files`` partitions: each file written holds one
    outcome, or two neighbours at a boundary, so Delta's min / max statistics let a reader of contacts skip the
    others. Measured here; the score stage does not use it (docs/benchmarks.md says why)."""
    return rows.repartitionByRange(files, "outcome", "customer_id")


def laid_out(df, layout: str, files: int):
    """``df`` spread over ``files`` partitions a day by ``layout``; ``as_written``: as the source day's files
    (``_file``, their path, one partition each: the score stage's own layout, whatever it is)."""
    from pyspark.sql import functions as F

    if layout == "as_written":
        return df.repartitionByRange(int(files), F.col("_file")).drop("_file")
    df = df.drop("_file")
    return df.repartition(files) if layout == "mixed" else by_outcome(df, files)


def write_table(spark, rows, day: dt.date, n: int, layout: str, files: int, path: Path) -> float:
    """A fresh ``gold.cpc_decisions`` at ``path`` holding ``n`` days in ``layout``, in one write; its seconds.
    Delta's cache of table logs is cleared first (the folder held another table of the same version)."""
    try:
        spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
    except Exception:  # noqa: BLE001 - a session without the JVM's classes: Delta then checks the log itself
        pass
    t0 = time.perf_counter()
    (laid_out(shifted(rows, day, n), layout, files)
     .write.format("delta").mode("overwrite").partitionBy("snapshot_date").save(str(path)))
    return round(time.perf_counter() - t0, 2)


def readers(spark, paths, day: dt.date, conf: tuple) -> tuple[dict[str, Callable[[], object]], dict[str, Callable[[], object]]]:
    """The three readers of past contacts as the score stage calls them, each evaluated to the end, and the
    evaluate stage in the scratch lake twice: ``evaluate``, every date of the lookback rebuilt (``full``), and ``evaluate_night``, the nightly case:
    the night of ``day - 1`` evaluated first, untimed (the second dict: what runs before a reader, untimed), then
    ``day``, which rebuilds only the dates that can have changed (jobs/stages/evaluate/rebuild.py)."""
    from jobs.stages import evaluate
    from jobs.stages.cpc.inputs import acceptance_scales, history, product_channel_table

    products, channels, categories, camps, policy = conf
    calls = {"history": lambda: history(spark, paths, day, policy, camps).count(),
             "product_channel_table": lambda: product_channel_table(spark, paths, day, products, channels,
                                                                           categories),
             "acceptance_scales": lambda: acceptance_scales(spark, paths, day, channels),
             "evaluate": lambda: evaluate.run(spark, paths, day, full=True),
             "evaluate_night": lambda: evaluate.run(spark, paths, day)}
    return calls, {"evaluate_night": lambda: evaluate.run(spark, paths, day - dt.timedelta(days=1))}


def time_readers(calls: dict[str, Callable[[], object]], repeat: int,
                 clock: Callable[[], float] = time.perf_counter,
                 before: dict[str, Callable[[], object]] | None = None) -> dict[str, dict]:
    """Each reader ``repeat`` times, one after another (reader by reader within a repeat), after its ``before``
    call if it has one (untimed): every repeat's seconds and the minimum."""
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):
        for name, call in calls.items():
            if before and name in before:
                before[name]()
            t0 = clock()
            call()
            seconds[name].append(round(clock() - t0, 3))
    return {name: {"seconds": s, "min": min(s)} for name, s in seconds.items()}


def evaluate_log(spark, paths, day: dt.date) -> dict:
    """The row ``ops.evaluate_log`` keeps of the last night timed (``day``): how it rebuilt the outcomes, and why."""
    from jobs.platform import lake

    row = lake.read(spark, paths, "ops.evaluate_log").where(f"eval_date = '{day.isoformat()}'").first()
    return {k: row[k] for k in ("method", "reason", "dates_rebuilt", "seconds")}


def windows(conf: tuple) -> dict:
    """The days each reader looks back (configuration), for reading the figures."""
    from jobs.platform.config import business
    from jobs.stages import evaluate

    _, _, _, camps, policy = conf
    learning = business("policy").get("learning", {})
    return {"history": max([policy.window_days, *[c.repeat_after_days for c in camps]]),
            "product_channel_table": int(business("channels")["product_channel_fit"]["history_days"]),
            "acceptance_scales": [int(learning.get("calibration_lag_days", 5)), int(learning.get("calibration_days", 28))],
            "evaluate": int(evaluate.settings()["lookback_days"]), "evaluate_night": int(evaluate.settings()["lookback_days"])}


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------
COLUMNS = ("layout", "days", "files", "with contacts", "rows", "rows read", "write s",
           *(f"{r} s" for r in READERS))


def row_cells(case: dict) -> list[str]:
    return [case["layout"], str(case["days"]), str(case["files"]), str(case["files_with_contact"]),
            str(case["rows"]), str(case["rows_in_files_with_contact"]), f"{case['write_seconds']:.1f}",
            *(f"{case['readers'][r]['min']:.2f}" for r in READERS)]


def line(cells: list[str]) -> str:
    widths = [max(len(c), 8) for c in COLUMNS]
    return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def run_case(spark, rows, args, scratch_paths, layout: str, n: int, files: int, conf: tuple) -> dict:
    """One table (``n`` days in ``layout``) written in the scratch lake, counted from its log, its readers timed."""
    path = fresh_table(scratch_paths, args.scratch)
    case = {"layout": layout, "days": n, "files_per_day": files,
            "write_seconds": write_table(spark, rows, args.date, n, layout, files, path)}
    case.update(file_counts(path))
    if case["files"] != n * files:  # e.g. as_written's range put two source files in one partition: mislabelled
        raise RuntimeError(f"{layout}, {n} days: {case['files']} files written, {n * files} expected ({files} a day)")
    calls, before = readers(spark, scratch_paths, args.date, conf)
    case["readers"] = time_readers(calls, args.repeat, before=before)
    case["evaluate_night_log"] = evaluate_log(spark, scratch_paths, args.date)
    return case


def start(args: argparse.Namespace, argv: list[str]) -> tuple:
    """The root's settings and session, the day's rows, and the result's header."""
    os.environ["CPC_ROOT"] = str(args.root.resolve())  # before settings() reads it
    os.environ.setdefault("CPC_ENV", "local")
    from bench.nightly_bench import stamp
    from jobs.platform import logs
    from jobs.platform.config import settings
    from jobs.platform.provenance import git_state
    from jobs.platform.spark import get_spark

    logs.setup()
    code, cfg = git_state(), settings()  # the commit at the start: the code measured
    missing = [t for t in NEEDED if not (Path(cfg.paths.table(t)) / "_delta_log").is_dir()]
    if missing:
        raise SystemExit(f"{cfg.paths.root}: no {', '.join(missing)}: run a nightly there first (make run, make bench)")
    spark = get_spark(cfg, app_name="cpc-decision-history")
    rows, args.date = source_rows(spark, cfg.paths, args.date)
    counts = {r["outcome"]: int(r["count"]) for r in rows.groupBy("outcome").count().collect()}  # a row an outcome
    if not counts:
        raise SystemExit(f"{cfg.paths.table(TABLE)}: no rows on {args.date}")
    result = {"root": str(cfg.paths.root), "scratch": str(args.scratch), "date": args.date.isoformat(),
              "days": args.days, "repeat": args.repeat, "layouts": args.layouts,
              "files_per_day": int(spark.conf.get("spark.sql.shuffle.partitions")),
              "files_as_written": rows.select("_file").distinct().count(),  # the source day's files
              "rows_per_day": sum(counts.values()), "rows_per_day_by_outcome": dict(sorted(counts.items())),
              # without it acceptance_scales returns its priors and reads no decision
              "responses": (Path(cfg.paths.table("bronze.responses")) / "_delta_log").is_dir(),
              **stamp(cfg, "bench/decision_history.py", argv, code), "cases": []}
    return spark, cfg, rows, result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    args.scratch = args.scratch.resolve()
    check_scratch(args.root, args.scratch)  # before the session starts
    spark, cfg, rows, result = start(args, argv)
    from jobs.platform.config import Paths
    from jobs.stages.cpc import load_conf

    conf = load_conf()
    result["windows"] = windows(conf)
    scratch_paths = Paths(scratch_lake(cfg.paths.root, args.scratch))
    print(f"decision history: {result['rows_per_day']} rows a day {result['rows_per_day_by_outcome']}, "
          f"{result['files_per_day']} files a day ({result['files_as_written']} as the stage wrote it), run date {args.date}",
          flush=True)
    print(line(list(COLUMNS)), flush=True)
    try:
        for n in args.days:
            for layout in args.layouts:
                files = result["files_as_written" if layout == "as_written" else "files_per_day"]
                case = run_case(spark, rows, args, scratch_paths, layout, n, files, conf)
                result["cases"].append(case)
                save(args.out, result)
                print(line(row_cells(case)), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(args.scratch, ignore_errors=True)
    print("(seconds: the minimum of each reader's repeats; rows read: rows of the files holding contacts)")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
