"""After a run: where everything is, rows per table for the date, tags computed, list sizes per channel, what the
date's evaluation covers, written to ``reports/run_<date>.json`` and printed for a person."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from jobs.platform import arrow_lake
from jobs.platform.config import Settings, parse_date, settings
from jobs.stages.cpc import funnel
from jobs.stages.cpc.campaigns import evaluation_settings
from jobs.stages.tags.catalogue import load_catalogue
from schemas import FILES, TABLES


def summary(day: dt.date | str, cfg: Settings | None = None) -> dict:
    """Where everything is after a run, with rows per table (of the date where the table is dated), tags computed
    and list sizes per channel. Read without Spark (``arrow_lake``): a few seconds, where a Spark session spent
    over a minute loading the tables' logs in a cold JVM."""
    cfg = cfg or settings()
    paths = cfg.paths
    day = parse_date(day)
    tables = {}
    for name in TABLES:
        if (n := arrow_lake.rows(paths, name, day)) is not None:
            tables[name] = {"path": paths.table(name), "rows": n, "of_date": arrow_lake.date_column(name) is not None}
    exports = {}
    folder = paths.export_day(day)
    if folder.exists():
        for link in sorted(p for p in folder.iterdir() if p.is_symlink()):
            m = json.loads((link / "manifest.json").read_text())
            exports[link.name] = {"rows": m["rows"], "path": str(link / m["files"][0]["name"])}
    ledger, not_ingested = {}, []
    if "ops.ingest_ledger" in tables:
        rows = arrow_lake.read(paths, "ops.ingest_ledger", ["kind", "file", "status", "reason", "rows_received", "rows_quarantined"],
                               day)  # a row per file
        for r in sorted(rows, key=lambda r: (r["kind"], r["file"])):
            if r["status"] == "unrecognised":  # a file of no known kind, or a second copy: archived, not ingested
                not_ingested.append({"file": r["file"], "reason": r["reason"],
                                     "kept": str(paths.archive_day(day) / "unrecognised" / r["file"])})
            else:
                ledger[r["kind"]] = {"status": r["status"], "received": r["rows_received"], "quarantined": r["rows_quarantined"],
                                     "reason": r["reason"]}
    n_tags = len(load_catalogue().tags)
    campaigns = []
    if "gold.cpc_funnel" in tables:
        campaigns = funnel.short(funnel.read(paths, day))
    report = paths.reports / f"campaigns_{day.isoformat()}.html"
    out = {"run_date": day.isoformat(), "root": str(paths.root), "tags": n_tags, "tables": tables, "exports": exports,
           "ingest": ledger, "not_ingested": not_ingested, "campaigns": campaigns, "evaluation": evaluation(paths, day),
           "campaign_report": str(report) if report.exists() else None}
    paths.reports.mkdir(parents=True, exist_ok=True)
    (paths.reports / f"run_{day.isoformat()}.json").write_text(json.dumps(out, indent=2))
    return out


EVAL_FIGURES = ("treated", "holdout", "conversions", "holdout_conversions", "lift", "lift_low", "lift_high")


def evaluation(paths, day: dt.date) -> dict:
    """What the date's evaluation covers: the decision days before it (within ``lookback_days``, as the evaluate
    stage reads them) whose decisions have an outcome in gold.campaign_outcomes (a response or an order), and the
    ``all`` cell of gold.campaign_eval (treated, holdout, conversions, lift with its 95% interval)."""
    import pyarrow.dataset as ds

    out: dict = {"decision_days": 0, "first": None, "last": None}
    if not arrow_lake.exists(paths, "gold.campaign_outcomes"):
        return out
    since = day - dt.timedelta(days=int(evaluation_settings()["lookback_days"]))
    date = ds.field("snapshot_date")
    answered = ds.field("delivered") | ds.field("failed") | ds.field("converted")  # Kleene: null | false is no answer
    days = arrow_lake.distinct(paths, "gold.campaign_outcomes", "snapshot_date", (date > since) & (date < day) & answered,
                               [("snapshot_date", ">", since.isoformat()), ("snapshot_date", "<", day.isoformat())])
    if days:
        out.update(decision_days=len(days), first=days[0].isoformat(), last=days[-1].isoformat())
    if arrow_lake.exists(paths, "gold.campaign_eval"):
        total = arrow_lake.read(paths, "gold.campaign_eval", list(EVAL_FIGURES), day, ds.field("level") == "all")  # one row
        if total:
            out.update(total[0])
    return out


def evaluation_line(e: dict | None) -> str:
    """The summary's line on the evaluation (:func:`evaluation`)."""
    if not e or not e.get("decision_days"):
        return "Evaluation: covers no decision day with outcomes yet (a day's lists are answered on the days after it)"
    n = e["decision_days"]
    text = f"Evaluation: covers {n} decision day{'s' if n != 1 else ''} with outcomes ({e['first']}..{e['last']})"
    if e.get("treated") is not None:
        text += f": {e['treated']:,} treated, {e['conversions']:,} conversions; {e['holdout']:,} held out, {e['holdout_conversions']:,} conversions"
    if e.get("lift") is not None:
        text += f"; lift {e['lift']:+.4f} [{e['lift_low']:+.4f}, {e['lift_high']:+.4f}]"
    return text


def print_summary(s: dict) -> None:
    root = Path(s["root"])
    print("")
    print(f"=== Nightly run {s['run_date']}: done ===")
    print(f"Data root: {root}")
    print("Ingested files (this date):")
    for kind in FILES:
        if kind in s["ingest"]:
            i = s["ingest"][kind]
            why = f" ({i['reason']})" if i.get("reason") and i["status"] != "accepted" else ""
            print(f"  {kind:<12} {i['status']:<9} {i['received']:>8} rows received, {i['quarantined']} quarantined{why}")
    for f in s.get("not_ingested", []):
        print(f"  NOT INGESTED {f['file']}: {f['reason']} (kept as {f['kept']})")
    print("Delta tables (rows for this date where the table is dated):")
    for name, t in s["tables"].items():
        print(f"  {name:<24} {t['rows']:>9}  {t['path']}")
    print(f"Tags computed: {s['tags']} per customer (gold.customer_tags; catalogue in gold.tag_catalogue)")
    if s.get("campaigns"):
        print(f"Campaigns (customers; the whole funnel: cpc funnel --date {s['run_date']}):")
        for line in s["campaigns"]:
            print(line)
    print("Lists for downstream systems:")
    for ch, e in s["exports"].items():
        print(f"  {ch:<14} {e['rows']:>7} rows  {e['path']}")
    if "evaluation" in s:
        print(evaluation_line(s["evaluation"]))
    if s.get("campaign_report"):
        print(f"Campaign report (responses, conversions, lift over the holdouts): {s['campaign_report']}")
    print(f"Summary JSON: {root / 'reports' / ('run_' + s['run_date'] + '.json')}")
