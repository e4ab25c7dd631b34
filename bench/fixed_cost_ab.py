"""Fixed costs cut from the night, each against the code it replaced, taking turns in one warm Spark session.

Usage: ``.venv/bin/python bench/fixed_cost_ab.py --root var --date 2026-11-20 --repeat 7`` (reads a storage root that
a nightly has run on, such as ``make run``'s ``var``; writes only a scratch table under ``--scratch``).

Each pair is the Spark query (or queries) a stage used to run and what replaced it, called in turn ``--repeat``
times in one session (which goes first alternates), so the machine's load falls on both alike; the answers of the two
must be equal in every repeat or the script stops. Reported per pair: the seconds of each repeat and the medians.

- ``quarantined kinds``: an ingest call's kinds with quarantined rows on its dates. Was a ``distinct`` query on
  bronze.quarantine; now the partitions of its files with rows, from its Delta log (``arrow_lake.partitions``).
- ``deliveries fingerprint``: the SHA-256 over the accepted deliveries that feeds the decision's run id. Was a
  Spark aggregation over ops.ingest_ledger; now the ledger read in the process and hashed the same way.
- ``campaign_eval rows``: the evaluation's rows of the day for the report. Was a Spark query; now ``arrow_lake.read``.
- ``decisions summary``: gold.cpc_decisions written and the day's rows counted by outcome and channel. Was the
  write, then a query reading the partition back; now an ``Observation`` on the rows the write writes (its own job
  counts them). The write goes to a scratch root, not to ``--root``.

The replaced queries are kept here, as they were, so that the comparison can be run again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OUT = Path(__file__).resolve().parent / "results" / "fixed_cost_ab.json"
LEVELS = ["all", "campaign", "channel", "campaign,channel"]


def replaced_reads(spark, paths, day: dt.date) -> dict:
    """Pair name -> (the code it replaced, the code now), each a function of no argument giving a comparable
    answer."""
    import pyarrow.dataset as ds
    from pyspark.sql import functions as F

    from jobs.platform import arrow_lake, lake
    from jobs.stages.cpc.inputs import deliveries_fingerprint
    from jobs.stages.ingest import quarantined_kinds
    from schemas import LEDGER

    def kinds_spark():
        if not lake.exists(spark, paths, "bronze.quarantine"):
            return None
        return {r["kind"] for r in lake.read(spark, paths, "bronze.quarantine").where(lake.in_dates("delivery_date", [day]))
                .select("kind").distinct().collect()}

    def fingerprint_spark():
        accepted = lake.read(spark, paths, LEDGER.name).where((F.col("delivery_date") <= F.lit(day)) & (F.col("status") == "accepted"))
        key = F.concat_ws("|", "kind", F.col("delivery_date").cast("string"), F.coalesce("md5", F.lit("")))
        return accepted.agg(F.sha2(F.concat_ws(",", F.array_sort(F.collect_list(key))), 256)).first()[0]

    def as_text(rows):
        return sorted(json.dumps(r, default=str) for r in rows)  # every column, in order

    def eval_spark():
        return as_text(r.asDict() for r in lake.read(spark, paths, "gold.campaign_eval").where(f"eval_date = '{day}'").where(
            F.col("level").isin(*LEVELS)).collect())

    def eval_log():
        return as_text(arrow_lake.read(paths, "gold.campaign_eval", None, day, ds.field("level").isin(LEVELS)))

    return {"quarantined kinds": (kinds_spark, lambda: quarantined_kinds(paths, [day])),
            "deliveries fingerprint": (fingerprint_spark, lambda: deliveries_fingerprint(spark, paths, day)),
            "campaign_eval rows": (eval_spark, eval_log)}


def decided_frame(spark, paths, day: dt.date):
    """The day's decided candidates as the score stage holds them before its writes (checkpointed), and the
    channels."""
    from jobs.stages import cpc
    from models import uplift as uplift_model

    products, channels, categories, camps, policy = cpc.load_conf()
    pc_fit = {(r["product_id"], r["channel"]): r["fit"] for r in cpc.product_channel_table(spark, paths, day, products, channels, categories)}
    s = uplift_model.load_settings()
    frame = cpc.inputs(spark, paths, day, products, policy, camps, uplift=s.rank)
    scales = cpc.acceptance_scales(spark, paths, day, channels)
    notes, factors = (cpc.uplift_ranking(spark, paths, day, products, camps, s.cold_start_incrementality) if s.rank
                      else cpc.ranking_off(products, camps))
    harm = cpc.closure_harm(spark, paths, day, camps, policy)
    combo_df = cpc.combos(spark, products, channels, camps, pc_fit, day, {ch: v["scale"] for ch, v in scales.items()}, notes, factors,
                          harm)
    cands = cpc.candidates(frame, products, channels, camps, policy, combo_df, day).localCheckpoint()
    decided = cpc.decide(cpc.past_eligibility(cands), channels, policy, customers=cpc.day_customers(spark, paths, day))
    return decided.localCheckpoint(), channels


def summary_pair(spark, paths, day: dt.date, scratch: Path) -> tuple:
    """(write then read back, write observed) of gold.cpc_decisions into ``scratch``, with the run's summary."""
    from pyspark.sql import Observation

    from jobs.platform import lake
    from jobs.platform.config import Paths
    from jobs.stages import cpc

    decided, channels = decided_frame(spark, paths, day)
    out, cond = Paths(scratch), f"snapshot_date = '{day.isoformat()}'"

    def read_back():  # the stage's earlier way, kept as its fallback: cpc.read_back_counts
        lake.replace(cpc.decisions(decided, "ab"), out, "gold.cpc_decisions", cond, merge_schema=True)
        return cpc._written(cpc.read_back_counts(spark, out, day), day, time.time())

    def observed():
        seen = Observation("written")
        lake.replace(cpc.decisions(decided, "ab").observe(seen, *cpc.written_counts(channels)), out, "gold.cpc_decisions", cond,
                     merge_schema=True)
        return cpc._written(seen.get, day, time.time())

    return read_back, observed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("var"), help="a storage root a nightly has run on")
    ap.add_argument("--date", type=dt.date.fromisoformat, default=dt.date(2026, 11, 20))
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/cpc_fixed_cost_ab"), help="emptied first; the summary's writes")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    os.environ["CPC_ROOT"] = str(args.root.resolve())
    os.environ.setdefault("CPC_ENV", "local")
    from bench.nightly_bench import write_result
    from jobs.platform import logs
    from jobs.platform.config import settings
    from jobs.platform.provenance import git_state
    from jobs.platform.spark import get_spark

    logs.setup()
    code, cfg = git_state(), settings()
    shutil.rmtree(args.scratch, ignore_errors=True)
    spark = get_spark(cfg, app_name="cpc-fixed-cost-ab")
    pairs = {**replaced_reads(spark, cfg.paths, args.date),
             "decisions summary": summary_pair(spark, cfg.paths, args.date, args.scratch)}
    seconds = {name: {"before": [], "now": []} for name in pairs}
    for i in range(args.repeat):
        for name, (before, now) in pairs.items():
            answers = []
            sides = (("before", before), ("now", now))
            for side, fn in sides if i % 2 == 0 else sides[::-1]:  # which goes first alternates
                t = time.perf_counter()
                answers.append(fn())
                seconds[name][side].append(round(time.perf_counter() - t, 3))
            if answers[0] != answers[1]:  # equal either way round
                raise SystemExit(f"{name}: the answers differ in repeat {i + 1}: {str(answers[0])[:400]} against {str(answers[1])[:400]}")
        print(f"repeat {i + 1}/{args.repeat}: " + ", ".join(f"{n} {s['before'][-1]:.2f} -> {s['now'][-1]:.2f} s" for n, s in seconds.items()),
              flush=True)
    result = {"root": str(args.root), "date": args.date.isoformat(), "repeat": args.repeat, "answers_equal": True,
              "pairs": {n: {**s, "median_before_s": statistics.median(s["before"]), "median_now_s": statistics.median(s["now"]),
                            "median_saved_s": round(statistics.median(s["before"]) - statistics.median(s["now"]), 3)}
                        for n, s in seconds.items()}}
    result["median_saved_s_total"] = round(sum(p["median_saved_s"] for p in result["pairs"].values()), 3)
    write_result(args.out, result, cfg, "bench/fixed_cost_ab.py", argv, code)
    for n, p in result["pairs"].items():
        print(f"{n:28s} median {p['median_before_s']:6.3f} s before, {p['median_now_s']:6.3f} s now")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
