"""Exports: the day's list for each outbound channel, and the placements for the passive ones, in the shape each
downstream system takes.

The lists are the CPC decisions (``gold.cpc_decisions``), nothing more: every ``contact`` row goes to its
channel's list, every ``placement`` row to the placements table, so rows exported = rows decided (checked
before anything is published). Shapes (columns in ``conf/channels.yaml`` ``export``):
- SMS gateway (``sms_push``): number, template, parameters (``key=value;...``)
- WeChat and e-mail: the customer's WeChat binding (customer id) or address, template, parameters
- outbound IVR: number, script, parameters
- outbound calls for agents: customer, number, campaign, offer, price, reasons, best time to call, tier
- placements (passive channels): customer -> offer to show when they call or visit, and how: agent pop-up,
  IVR routing hint, web/WAP/app banner, SMS-hall menu; valid until a date
Every row carries ``contact_ref``, the key a response comes back with.

Before publishing, each list is checked against the policy's absolutes: nobody opted out (all channels or
this one), nobody in a tier without marketing, nobody with an open complaint unless the row's campaign says
``while_complaint_open: true``, nobody in the campaign's holdout or in the global holdout, never more rows
than the channel's capacity. A failed check publishes nothing.

Every list is published atomically: written to a hidden version folder with its data file, ``manifest.json``
(rows, SHA-256, run date, campaigns, columns, the Delta versions of the tables it came from, the decision
run with its model versions) and ``_SUCCESS``; then ``exports/<date>/<channel>`` (a symbolic link) is
switched to it in one rename. A reader never sees half a list; a rerun publishes a new version and switches
the link. Every list is checked before the first is published, and ``exports/<date>/manifest.json`` with the
day's ``_SUCCESS`` is written after the last: a system that takes several lists waits for that marker.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

from jobs.platform import arrow_lake, lake
from jobs.platform.config import Paths, business
from jobs.platform.errors import ExportError
from jobs.stages.cpc import day_customers, in_campaign_holdout, in_global_holdout, load_conf
from jobs.stages.cpc.decide import CHOSEN
from jobs.stages.cpc.fits import daily_capacity
from jobs.stages.ingest import close_day
from jobs.stages.tags import profile_asof

log = logging.getLogger(__name__)

PLACEMENT_COLUMNS = ("contact_ref", "customer_id", "channel", "display", "campaign_id", "product_id", "offer_name",
                     "reasons", "valid_until")




def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def held_out(policy) -> dict:
    """The guard's holdout columns, recomputed from the salt (not read from the decision): ``in_holdout``, the
    row's campaign's holdout (share from the ``holdout_share`` column; unknown campaign: 0), and
    ``in_global_holdout``, the policy's global holdout (every campaign)."""
    from pyspark.sql import functions as F

    return {"in_holdout": in_campaign_holdout(policy), "in_global_holdout": in_global_holdout(policy, F.col("customer_id"))}


SOURCES = ("gold.cpc_decisions", "gold.customer_tags", "gold.customer_segment", "bronze.crm_profile")


def contactable(spark, paths: Paths, day: dt.date, versions: dict[str, int] | None = None):
    """The day's contacts and placements joined with what the channels need (phone, e-mail, display) and the
    guards the policy demands. ``versions`` reads every source table at a recorded Delta version (to rebuild
    a list as it was sent)."""
    from pyspark.sql import functions as F


    v = versions or {}
    cond = f"snapshot_date = '{day.isoformat()}'"
    decided = lake.read(spark, paths, "gold.cpc_decisions", v.get("gold.cpc_decisions")).where(cond).where(
        F.col("outcome").isin(*CHOSEN))
    _, channels, _, camps, policy = load_conf()
    display = spark.createDataFrame([(c.id, c.display) for c in channels if c.kind == "passive"], "channel string, display string")
    shares = spark.createDataFrame([(c.id, c.holdout, c.while_complaint_open) for c in camps],
                                   "campaign_id string, holdout_share double, while_complaint_open boolean")
    contact = profile_asof(spark, paths, day, v.get("bronze.crm_profile")).select("customer_id", "msisdn", "email")
    guards = lake.read(spark, paths, "gold.customer_tags", v.get("gold.customer_tags")).where(cond).select(
        "customer_id", "cp_optout_all", *[f"cp_optout_{c.id}" for c in channels if c.kind == "active"], "soc_elderly",
        "svc_open_complaint",
    )
    tiers = lake.read(spark, paths, "gold.customer_segment", v.get("gold.customer_segment")).where(cond).select("customer_id", "marketing_allowed")
    params = F.concat_ws(";", F.concat(F.lit("offer="), F.col("offer_name")), F.concat(F.lit("price="), F.col("price").cast("string")),
                         F.concat(F.lit("product="), F.col("product_id")), F.concat(F.lit("ref="), F.col("contact_ref")))
    return (
        decided.join(contact, on="customer_id", how="left")
        .join(guards, on="customer_id", how="left")
        .join(tiers.withColumnRenamed("marketing_allowed", "tier_marketing_allowed"), on="customer_id", how="left")
        .join(F.broadcast(display), on="channel", how="left")
        .join(F.broadcast(shares), on="campaign_id", how="left")
        .withColumns(held_out(policy))
        .withColumn("template_id", F.concat_ws("_", F.lit("T"), F.upper("channel"), F.upper("campaign_id"), "product_id"))
        .withColumn("script_id", F.concat_ws("_", F.lit("S"), F.upper("campaign_id"), "product_id"))
        .withColumn("subject", F.col("offer_name"))
        .withColumn("params", params)
        .withColumn("best_time", F.when(F.col("soc_elderly"), F.lit("10:00-12:00")).otherwise(F.lit("18:00-20:00")))
        .withColumn("valid_until", F.date_add(F.lit(day), policy.placement_valid_days))
    )


def select_list(base, channel: dict):
    """The rows of one channel's list (deterministic order): its contacts, or every placement."""
    from pyspark.sql import functions as F

    if channel["id"] == "placements":
        return base.where(F.col("outcome") == "placement").orderBy("customer_id", "channel")
    return base.where((F.col("outcome") == "contact") & (F.col("channel") == channel["id"])).orderBy(
        F.col("expected_value").desc(), "customer_id")


def violates(columns):
    """Per row, true when it must never be exported: opted out (of all marketing, or of the row's own active
    channel), in a tier without marketing, with an open complaint while the row's campaign does not allow it
    (``while_complaint_open``), in the campaign's holdout or in the global holdout. Unknown counts as a violation
    (a customer without tags has an open complaint; a campaign not in conf/campaigns/ does not allow it)."""
    from pyspark.sql import functions as F

    own = [F.when(F.col("channel") == c[len("cp_optout_"):], F.coalesce(F.col(c), F.lit(True)))
           for c in columns if c.startswith("cp_optout_") and c != "cp_optout_all"]
    channel_optout = F.when(F.col("outcome") == "contact", F.coalesce(*own, F.lit(False))).otherwise(F.lit(False))
    allowed = F.coalesce(F.col("while_complaint_open"), F.lit(False))
    complaint = F.coalesce(F.col("svc_open_complaint"), F.lit(True)) & ~allowed
    return (F.coalesce(F.col("cp_optout_all"), F.lit(True)) | channel_optout
            | ~F.coalesce(F.col("tier_marketing_allowed"), F.lit(False)) | complaint
            | F.coalesce(F.col("in_holdout"), F.lit(True)) | F.coalesce(F.col("in_global_holdout"), F.lit(True)))


def list_stats(base) -> dict[str, dict]:
    """Rows, violations and campaigns of every list in one aggregation (one row per list)."""
    from pyspark.sql import functions as F

    key = F.when(F.col("outcome") == "placement", F.lit("placements")).otherwise(F.col("channel"))
    agg = base.groupBy(key.alias("list")).agg(
        F.count(F.lit(1)).alias("rows"), F.sum(violates(base.columns).cast("int")).alias("bad"),
        F.sort_array(F.collect_set("campaign_id")).alias("campaigns"))
    return {r["list"]: r.asDict() for r in agg.collect()}


def write_list(df, columns: list[str], folder: Path, name: str, day: dt.date, rows: int | None = None) -> tuple[Path, int]:
    """One gzip CSV with a header, written by Spark into ``folder``; returns (file, rows). ``rows``: the frame's
    count when the caller has it already (the export's checked count of the list); else counted."""
    import gzip

    df.select(*columns).coalesce(1).write.option("header", True).option("compression", "gzip").csv(str(folder / "spark"))
    parts = sorted((folder / "spark").glob("part-*.csv.gz"))
    data = folder / f"{name}_{day:%Y%m%d}.csv.gz"
    if parts:
        parts[0].rename(data)
    else:  # an empty list still gets a file with its header
        data.write_bytes(gzip.compress((",".join(columns) + "\n").encode(), mtime=0))
    shutil.rmtree(folder / "spark")
    return data, df.count() if rows is None else rows


def _publish(df, columns: list[str], paths: Paths, day: dt.date, name: str, versions: dict[str, int],
             run: dict | None = None, campaigns: list[str] | None = None, rows: int | None = None) -> dict:
    """Write ``df`` as one gzip CSV with its manifest, then switch ``exports/<day>/<name>`` to it. ``rows``: the
    list's count, when known (:func:`write_list`)."""
    folder = paths.export_day(day)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    data, rows = write_list(df, columns, tmp, name, day, rows)
    digest = _sha256(data)
    manifest = {
        "channel": name, "run_date": day.isoformat(), "campaigns": campaigns, "rows": rows,
        "columns": columns, "files": [{"name": data.name, "sha256": digest, "bytes": data.stat().st_size}],
        "source": {"table": "gold.cpc_decisions", "delta_version": versions["gold.cpc_decisions"], "versions": versions,
                   "decision_run": run},
    }
    body = json.dumps(manifest, indent=2)
    (tmp / "manifest.json").write_text(body)
    (tmp / "_SUCCESS").write_text("")
    # A version is its data and its manifest: the same list from another decision run (or other table versions)
    # is a new version, so the list's manifest always names the run the day's manifest names.
    version_dir = folder / f".{name}-{hashlib.sha256((digest + body).encode()).hexdigest()[:16]}"
    if version_dir.exists():
        shutil.rmtree(tmp)  # the same data and manifest already published
    else:
        tmp.rename(version_dir)
    link = folder / name
    tmp_link = folder / f".link-{name}-{os.getpid()}"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    tmp_link.symlink_to(version_dir.name)
    previous = os.readlink(link) if link.is_symlink() else None
    os.replace(tmp_link, link)  # atomic switch
    if previous and previous != version_dir.name:
        shutil.rmtree(folder / previous, ignore_errors=True)
    return {"channel": name, "rows": rows, "sha256": digest, "path": str(link)}


def list_channels() -> list[dict]:
    """Every list the export writes: the active channels (with capacity), then the passive placements."""
    active = [c for c in business("channels")["channels"] if c["kind"] == "active"]
    return active + [{"id": "placements", "export": list(PLACEMENT_COLUMNS)}]


def rebuild(spark, paths: Paths, day: dt.date, channel: str, out: Path, manifest: dict | None = None) -> dict:
    """Rebuild a published list exactly as it was sent, from the Delta versions its manifest recorded
    (Delta time travel), whatever was rerun since. Writes the file under ``out``; returns rows and SHA-256
    of the uncompressed content, with the manifest's figures to compare."""
    import gzip

    manifest = manifest or json.loads((paths.export_day(day) / channel / "manifest.json").read_text())
    versions = manifest["source"]["versions"]
    ch = next(c for c in list_channels() if c["id"] == channel)
    base = contactable(spark, paths, day, versions)
    out.mkdir(parents=True, exist_ok=True)
    data, rows = write_list(select_list(base, ch), list(ch["export"]), out, channel, day)
    return {"channel": channel, "rows": rows, "file": str(data),
            "content_sha256": hashlib.sha256(gzip.decompress(data.read_bytes())).hexdigest(),
            "manifest_rows": manifest["rows"], "versions": versions}


def audit_rows(spark, published: list[dict], day: dt.date, version: int):
    """Who published what, when: the audit trail of every list handed to a downstream system."""
    import getpass

    who = os.environ.get("CPC_OPERATOR") or getpass.getuser()
    run_id = os.environ.get("AIRFLOW_CTX_DAG_RUN_ID")
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return spark.createDataFrame(
        [(day, p["channel"], p["rows"], p["sha256"], p["path"], version, who, run_id, now) for p in published],
        "run_date date, channel string, rows bigint, sha256 string, path string, decisions_version bigint, "
        "published_by string, airflow_run_id string, published_at timestamp",
    )


def write_day_manifest(paths: Paths, day: dt.date, published: list[dict], run_info: dict) -> Path:
    """``exports/<date>/manifest.json`` (every list with rows and SHA-256, the decision run) and the day's
    ``_SUCCESS``, written last: a system that takes several lists waits for it."""
    folder = paths.export_day(day)
    body = {"run_date": day.isoformat(), "decision_run": run_info["run_id"],
            "lists": {p["channel"]: {"rows": p["rows"], "sha256": p["sha256"]} for p in published}}
    tmp = folder / f".manifest-{os.getpid()}.json"
    tmp.write_text(json.dumps(body, indent=2))
    os.replace(tmp, folder / "manifest.json")
    (folder / "_SUCCESS").write_text("")
    return folder / "manifest.json"


def decision_run(spark, paths: Paths, day: dt.date) -> dict:
    """The day's CPC decision run (ops.cpc_runs): run id, input table versions, model versions, config hash. A row
    a date, read in this process (``arrow_lake``: no Spark job)."""
    found = arrow_lake.read(paths, "ops.cpc_runs", ["run_id", "input_versions", "model_versions", "config_sha256"], day)
    if not found:
        raise ExportError(f"no CPC decision for {day} in ops.cpc_runs: run the score stage first")
    row = found[0]
    return {"run_id": row["run_id"], "input_versions": json.loads(row["input_versions"]),
            "model_versions": json.loads(row["model_versions"]), "config_sha256": row["config_sha256"]}


def decided_counts(spark, paths: Paths, day: dt.date, version: int) -> dict[str, int]:
    """Rows decided per list, straight from gold.cpc_decisions (what every list must hold, no more, no less)."""
    from pyspark.sql import functions as F

    d = lake.read(spark, paths, "gold.cpc_decisions", version).where(f"snapshot_date = '{day.isoformat()}'")
    key = F.when(F.col("outcome") == "placement", F.lit("placements")).otherwise(F.col("channel"))
    return {r["k"]: int(r["count"]) for r in d.where(F.col("outcome").isin(*CHOSEN)).groupBy(key.alias("k")).count().collect()}


def run(spark, paths: Paths, day: dt.date) -> list[dict]:
    t0 = time.time()
    versions = {t: lake.version(spark, paths, t) for t in SOURCES}
    version = versions["gold.cpc_decisions"]
    run_info = decision_run(spark, paths, day)
    expected = decided_counts(spark, paths, day, version)
    base = contactable(spark, paths, day, versions).cache()
    stats = list_stats(base)

    customers = day_customers(spark, paths, day, versions["gold.customer_segment"])
    for ch in list_channels():  # every list is checked before any is published
        st = stats.get(ch["id"], {"rows": 0, "bad": 0})
        if st["bad"]:
            raise ExportError(f"{ch['id']}: {st['bad']} rows break the contact policy (opted out, tier "
                              f"without marketing, open complaint, in a holdout or the global holdout); nothing published")
        n, want = st["rows"], expected.get(ch["id"], 0)
        if n != want:
            raise ExportError(f"{ch['id']}: {n} rows to export but {want} decided in gold.cpc_decisions v{version}; nothing published")
        cap = daily_capacity(ch.get("capacity"), customers) if ch.get("capacity") is not None else None
        if cap is not None and n > cap:
            raise ExportError(f"{ch['id']}: {n} rows exceed the channel's daily capacity {cap} ({ch['capacity']} for "
                              f"{customers} customers); nothing published")
    day_marker = paths.export_day(day) / "_SUCCESS"
    day_marker.unlink(missing_ok=True)  # while the links switch one by one, the day as a whole is not ready
    # each list's rows: its count in ``stats``, checked above against the decisions (no second count of the list)
    published = [_publish(select_list(base, ch), list(ch["export"]), paths, day, ch["id"], versions, run_info,
                          stats.get(ch["id"], {}).get("campaigns", []), stats.get(ch["id"], {}).get("rows", 0))
                 for ch in list_channels()]
    base.unpersist()
    write_day_manifest(paths, day, published, run_info)
    rows = [(day, p["channel"], p["rows"], p["sha256"], p["path"], version) for p in published]
    exported = spark.createDataFrame(rows, "run_date date, channel string, rows bigint, sha256 string, path string, decisions_version bigint")
    lake.replace(exported, paths, "ops.export_log", f"run_date = '{day.isoformat()}'")
    lake.append(audit_rows(spark, published, day, version), paths, "ops.export_audit")
    close_day(spark, paths, day)
    sizes = ", ".join(f"{p['channel']} {p['rows']}" for p in published)
    log.info(f"export {day}: {sizes} -> {paths.export_day(day)} ({time.time() - t0:.1f}s)")
    return published
