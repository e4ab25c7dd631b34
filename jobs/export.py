"""Exports: the day's target list for each outbound channel, and the placements for passive channels.

Each customer is contacted at most once a day: with their rank-1 offer. Offers on an active channel go to
that channel's list, cut at the channel's daily capacity by expected value across all customers (a global
top-k, not first come); offers on a passive channel go to the placements list (shown when the customer
calls or visits).

Every list is published atomically: written to a hidden version folder with its data file, ``manifest.json``
(rows, SHA-256, run date, campaign, columns, the Delta version of the offers it came from) and ``_SUCCESS``;
then ``exports/<date>/<channel>`` (a symbolic link) is switched to it in one rename. A reader never sees
half a list; a rerun publishes a new version and switches the link.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from jobs import lake
from jobs.config import Paths, business
from jobs.ingest import close_day
from jobs.tags import profile_asof

CAMPAIGN = "cpc_daily"
PLACEMENT_COLUMNS = ("customer_id", "channel", "product_id", "offer_name", "expected_value", "reasons")


class ExportError(RuntimeError):
    pass


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


SOURCES = ("gold.cpc_offers", "gold.customer_tags", "gold.customer_segment", "bronze.crm_profile")


def contactable(spark, paths: Paths, day: dt.date, versions: dict[str, int] | None = None):
    """Rank-1 offers joined with what the channels need (phone, e-mail), and the guards the policy demands.
    ``versions`` reads every source table at a recorded Delta version (to rebuild a list as it was sent)."""
    from pyspark.sql import functions as F

    v = versions or {}
    cond = f"snapshot_date = '{day.isoformat()}'"
    offers = lake.read(spark, paths, "gold.cpc_offers", v.get("gold.cpc_offers")).where(cond).where("rank = 1")
    products = spark.createDataFrame(
        [(p["id"], p["name_en"], float(p["price"])) for p in business("products")["products"]],
        "product_id string, offer_name string, price double",
    )
    contact = profile_asof(spark, paths, day, v.get("bronze.crm_profile")).select("customer_id", "msisdn", "email")
    guards = lake.read(spark, paths, "gold.customer_tags", v.get("gold.customer_tags")).where(cond).select(
        "customer_id", "cp_optout_all", "cp_optout_sms_push", "cp_optout_outbound_call", "cp_optout_outbound_ivr",
        "cp_optout_wechat", "cp_optout_email", "soc_elderly",
    )
    tiers = lake.read(spark, paths, "gold.customer_segment", v.get("gold.customer_segment")).where(cond).select("customer_id", "marketing_allowed")
    return (
        offers.join(F.broadcast(products), on="product_id", how="left")
        .join(contact, on="customer_id", how="left")
        .join(guards, on="customer_id", how="left")
        .join(tiers, on="customer_id", how="left")
        .withColumn("template_id", F.concat_ws("_", F.lit("T"), F.upper("channel"), "product_id"))
        .withColumn("script_id", F.concat_ws("_", F.lit("S"), "product_id"))
        .withColumn("best_time", F.when(F.col("soc_elderly"), F.lit("10:00-12:00")).otherwise(F.lit("18:00-20:00")))
    )


def select_list(base, channel: dict):
    """The rows of one channel's list from the contactable offers (deterministic order)."""
    from pyspark.sql import functions as F

    if channel["id"] == "placements":
        return base.where(F.col("channel_kind") == "passive").orderBy("customer_id")
    return base.where(F.col("channel") == channel["id"]).orderBy(F.col("expected_value").desc(), "customer_id").limit(int(channel["capacity"]))


def policy_violations(df, channel: str):
    """Rows that must never be exported: opted out (all or this channel) or in a tier without marketing."""
    from pyspark.sql import functions as F

    opt = F.coalesce(F.col("cp_optout_all"), F.lit(True))
    col = f"cp_optout_{channel}"
    if col in df.columns:
        opt = opt | F.coalesce(F.col(col), F.lit(True))
    return df.where(opt | ~F.coalesce(F.col("marketing_allowed"), F.lit(False)))


def write_list(df, columns: list[str], folder: Path, name: str, day: dt.date) -> tuple[Path, int]:
    """One gzip CSV with a header, written by Spark into ``folder``; returns (file, rows)."""
    import gzip

    df.select(*columns).coalesce(1).write.option("header", True).option("compression", "gzip").csv(str(folder / "spark"))
    parts = sorted((folder / "spark").glob("part-*.csv.gz"))
    data = folder / f"{name}_{day:%Y%m%d}.csv.gz"
    if parts:
        parts[0].rename(data)
    else:  # an empty list still gets a file with its header
        data.write_bytes(gzip.compress((",".join(columns) + "\n").encode(), mtime=0))
    shutil.rmtree(folder / "spark")
    return data, df.count()


def _publish(df, columns: list[str], paths: Paths, day: dt.date, name: str, versions: dict[str, int]) -> dict:
    """Write ``df`` as one gzip CSV with its manifest, then switch ``exports/<day>/<name>`` to it."""
    folder = paths.export_day(day)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    data, rows = write_list(df, columns, tmp, name, day)
    digest = _sha256(data)
    manifest = {
        "channel": name, "run_date": day.isoformat(), "campaign": CAMPAIGN, "rows": rows,
        "columns": columns, "files": [{"name": data.name, "sha256": digest, "bytes": data.stat().st_size}],
        "source": {"table": "gold.cpc_offers", "delta_version": versions["gold.cpc_offers"], "versions": versions},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (tmp / "_SUCCESS").write_text("")
    version_dir = folder / f".{name}-{digest[:16]}"
    if version_dir.exists():
        shutil.rmtree(tmp)  # identical content already published
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
        "run_date date, channel string, rows bigint, sha256 string, path string, offers_version bigint, "
        "published_by string, airflow_run_id string, published_at timestamp",
    )


def run(spark, paths: Paths, day: dt.date) -> list[dict]:

    t0 = time.time()
    versions = {t: lake.version(spark, paths, t) for t in SOURCES}
    version = versions["gold.cpc_offers"]
    base = contactable(spark, paths, day, versions).cache()
    published = []
    for ch in list_channels():
        chosen = select_list(base, ch)
        bad = policy_violations(chosen, ch["id"]).count()
        if bad:
            raise ExportError(f"{ch['id']}: {bad} rows break the contact policy (opted out or tier without marketing); nothing published")
        published.append(_publish(chosen, list(ch["export"]), paths, day, ch["id"], versions))
    base.unpersist()
    rows = [(day, p["channel"], p["rows"], p["sha256"], p["path"], version) for p in published]
    log = spark.createDataFrame(rows, "run_date date, channel string, rows bigint, sha256 string, path string, offers_version bigint")
    lake.replace(log, paths, "ops.export_log", f"run_date = '{day.isoformat()}'")
    lake.append(audit_rows(spark, published, day, version), paths, "ops.export_audit")
    close_day(spark, paths, day)
    sizes = ", ".join(f"{p['channel']} {p['rows']}" for p in published)
    print(f"export {day}: {sizes} -> {paths.export_day(day)} ({time.time() - t0:.1f}s)", flush=True)
    return published
