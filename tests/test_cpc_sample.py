"""The CPC decision and exports on the sample nightly run (the DAG run of conftest's ``sample``): capacity
never exceeded, holdouts never in a list, rows exported = rows decided, the funnel adds up, every list in its
system's shape with the versions it came from."""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import shutil

import pytest
from pyspark.sql import functions as F

from jobs.platform import lake
from jobs.platform.config import Paths
from jobs.stages import cpc, export
from jobs.stages.cpc import campaigns as campaign_conf
from jobs.stages.cpc import fits, funnel


@pytest.fixture(scope="module")
def run(sample, spark):
    paths, day = sample["paths"], sample["spec"].end_date
    decided = lake.read(spark, paths, "gold.cpc_decisions").where(F.col("snapshot_date") == F.lit(day))
    folder = paths.export_day(day)
    lists = {}
    for link in sorted(p for p in folder.iterdir() if p.is_symlink()):
        manifest = json.loads((link / "manifest.json").read_text())
        with gzip.open(link / manifest["files"][0]["name"], "rt", newline="") as fh:
            lists[link.name] = {"manifest": manifest, "rows": list(csv.DictReader(fh))}
    return {"paths": paths, "day": day, "decided": [r.asDict() for r in decided.collect()], "lists": lists,  # tiny sample
            "customers": cpc.day_customers(spark, paths, day)}


def test_capacity_never_exceeded_and_one_contact_a_customer(run):
    _, channels, _, _, _ = cpc.load_conf()
    contacts = [r for r in run["decided"] if r["outcome"] == "contact"]
    assert contacts, "the sample run contacts somebody"
    for c in channels:
        if c.kind == "active":
            assert sum(r["channel"] == c.id for r in contacts) <= fits.daily_capacity(c.capacity, run["customers"])
    who = [r["customer_id"] for r in contacts]
    assert len(who) == len(set(who))


def test_holdout_customers_never_appear_in_a_list(run):
    _, _, _, camps, policy = cpc.load_conf()
    share = {c.id: c.holdout for c in camps}
    held = {(r["customer_id"], r["campaign_id"]) for r in run["decided"] if r["outcome"] == "holdout"}
    assert held, "the sample has holdout members"
    by_ref = {r["contact_ref"]: r for r in run["decided"]}
    for name, lst in run["lists"].items():
        for row in lst["rows"]:
            d = by_ref[row["contact_ref"]]
            assert (d["customer_id"], d["campaign_id"]) not in held, name
            assert campaign_conf.holdout_bucket(policy.holdout_salt, d["campaign_id"], d["customer_id"]) >= share[d["campaign_id"]] * 10000
            assert campaign_conf.holdout_bucket(policy.holdout_salt, "__global__", d["customer_id"]) >= policy.global_holdout * 10000, name
    # the global holdout: no contact and no placement from any campaign, and its records are its members only
    globally = {r["customer_id"] for r in run["decided"] if r["outcome"] == "global_holdout"}
    members = {c for c in {r["customer_id"] for r in run["decided"]}
               if campaign_conf.holdout_bucket(policy.holdout_salt, "__global__", c) < policy.global_holdout * 10000}
    assert globally == members
    assert not [r for r in run["decided"] if r["customer_id"] in members and r["outcome"] in ("contact", "placement")]
    records = [(r["customer_id"], r["campaign_id"]) for r in run["decided"] if r["outcome"] == "global_holdout"]
    assert len(records) == len(set(records)), "one record per customer and campaign"


def test_not_chosen_are_recorded_once_and_never_listed(run):
    """Every (customer, campaign) eligible past both holdouts but neither contacted nor placed is recorded once
    as not_chosen (capacity and one-a-day leave some on the sample), never beside a contact or placement of the
    same campaign, and no list row names one."""
    lost = [r for r in run["decided"] if r["outcome"] == "not_chosen"]
    assert lost, "the sample has eligible customers not chosen"
    pairs = [(r["customer_id"], r["campaign_id"]) for r in lost]
    assert len(pairs) == len(set(pairs)), "once per customer and campaign"
    treated = {(r["customer_id"], r["campaign_id"]) for r in run["decided"] if r["outcome"] in ("contact", "placement")}
    assert not set(pairs) & treated
    refs = {r["contact_ref"] for r in lost}
    for name, lst in run["lists"].items():
        assert not refs & {row["contact_ref"] for row in lst["rows"]}, name


def test_no_contact_or_placement_for_an_open_complaint_unless_the_campaign_opted_in(run, spark):
    """Issue 20: whatever the tier, a customer whose tags show an open complaint (unknown counts as open) gets
    no contact and no placement in gold.cpc_decisions, and no row in any exported list, from a campaign that
    does not say while_complaint_open; the funnel has the open_complaint step right after
    tier_no_marketing."""
    _, _, _, camps, _ = cpc.load_conf()
    allowed = {c.id for c in camps if c.while_complaint_open}
    tags = lake.read(spark, run["paths"], "gold.customer_tags").where(
        F.col("snapshot_date") == F.lit(run["day"]))
    open_now = tags.where(F.coalesce(F.col("svc_open_complaint"), F.lit(True))).select("customer_id")
    complaining = {r["customer_id"] for r in open_now.collect()}  # a few of the sample's 300 customers
    assert complaining, "the sample has customers with an open complaint"
    leaked = sorted((r["customer_id"], r["campaign_id"], r["channel"], r["service_tier"])
                    for r in run["decided"]
                    if r["outcome"] in ("contact", "placement") and r["customer_id"] in complaining
                    and r["campaign_id"] not in allowed)
    assert not leaked, leaked[:10]
    by_ref = {r["contact_ref"]: r for r in run["decided"]}
    for name, lst in run["lists"].items():
        for row in lst["rows"]:
            d = by_ref[row["contact_ref"]]
            ok = d["customer_id"] not in complaining or d["campaign_id"] in allowed
            assert ok, (name, d["customer_id"], d["campaign_id"])
    text = funnel.markdown(funnel.tables(spark, run["paths"], run["day"]), run["day"])
    assert re.search(r"^\| tier_no_marketing +\|.*\n\| open_complaint +\| +[0-9,]+ \|", text, flags=re.M)


def test_rows_exported_equal_rows_decided_in_each_systems_shape(run):
    decided = run["decided"]
    for name, lst in run["lists"].items():
        if name == "placements":
            want = [r for r in decided if r["outcome"] == "placement"]
        else:
            want = [r for r in decided if r["outcome"] == "contact" and r["channel"] == name]
        assert lst["manifest"]["rows"] == len(lst["rows"]) == len(want), name
        assert {r["contact_ref"] for r in lst["rows"]} == {r["contact_ref"] for r in want}, name
        if lst["rows"]:
            assert list(lst["rows"][0]) == lst["manifest"]["columns"], name
        assert lst["manifest"]["source"]["decision_run"]["model_versions"] is not None
        assert "gold.cpc_decisions" in lst["manifest"]["source"]["versions"]
    sms = run["lists"]["sms_push"]
    assert sms["manifest"]["columns"] == ["contact_ref", "msisdn", "template_id", "params"]
    assert all(r["params"].startswith("offer=") and r["msisdn"] for r in sms["rows"])
    placed = run["lists"]["placements"]["rows"]
    assert placed and {r["display"] for r in placed} <= {"agent_popup", "ivr_routing_hint", "web_banner", "wap_banner", "sms_hall_menu", "app_banner"}
    day_manifest = json.loads((run["paths"].export_day(run["day"]) / "manifest.json").read_text())
    assert (run["paths"].export_day(run["day"]) / "_SUCCESS").exists()
    assert {k: v["rows"] for k, v in day_manifest["lists"].items()} == {k: v["manifest"]["rows"] for k, v in run["lists"].items()}
    call = run["lists"]["outbound_call"]["manifest"]["columns"]
    assert {"customer_id", "reasons", "best_time", "offer_name"} <= set(call)


def test_funnel_adds_up(run, spark):
    t = funnel.tables(spark, run["paths"], run["day"])
    decided = run["decided"]
    assert t["candidates"]["contact"] == sum(r["outcome"] == "contact" for r in decided)
    assert t["candidates"]["placement"] == sum(r["outcome"] == "placement" for r in decided)
    for camp, steps in t["customers"].items():
        reached = {r["customer_id"] for r in decided if r["campaign_id"] == camp and r["outcome"] == "contact"}
        assert steps.get("contact", 0) == len(reached), camp
    assert funnel.read(run["paths"], run["day"]) == t, "read without Spark (cpc funnel, the summary): the same"
    text = funnel.markdown(t, run["day"])
    assert re.search(r"^\| opt_out +\| +[0-9,]+ \|", text, flags=re.M) and "contacted" in text


def test_decision_run_records_versions(run, spark):
    info = export.decision_run(spark, run["paths"], run["day"])
    assert {"gold.customer_tags", "gold.customer_segment"} <= set(info["input_versions"])
    assert len(info["config_sha256"]) == 64
    pc = lake.read(spark, run["paths"], "gold.fit_product_channel").where(F.col("snapshot_date") == F.lit(run["day"]))
    assert pc.where("channel = 'app' and product_id = 'P_GAMES'").first()["fit"] > 0


def test_export_checks_every_list_before_publishing_anything(spark, sample, cfg, tmp_path, monkeypatch):
    """Over a copy of the sample: a list over its channel's capacity, then a holdout member turned into a
    contact, each stop the export with an error naming the list and the rule, and no link moves."""
    root = tmp_path / "copy"
    shutil.copytree(sample["paths"].root, root, symlinks=True)
    paths, day = Paths(root), sample["spec"].end_date
    folder = paths.export_day(day)

    def links():
        return {p.name: os.readlink(p) for p in folder.iterdir() if p.is_symlink()}

    before = links()
    rows = {c["id"]: json.loads((folder / c["id"] / "manifest.json").read_text())["rows"] for c in export.list_channels()}
    busiest = max((c["id"] for c in export.list_channels() if c.get("capacity")), key=lambda c: rows[c])
    assert rows[busiest] > 1
    small = [{**c, "capacity": 1} if c["id"] == busiest else c for c in export.list_channels()]
    monkeypatch.setattr(export, "list_channels", lambda: small)
    with pytest.raises(export.ExportError, match=f"{busiest}: .* exceed the channel's daily capacity 1 "):
        export.run(spark, paths, day)
    assert links() == before
    monkeypatch.undo()

    cond = f"snapshot_date = '{day.isoformat()}'"
    d = lake.read(spark, paths, "gold.cpc_decisions").where(cond)
    bad = (d.where("outcome = 'holdout'").orderBy("customer_id", "campaign_id").limit(1)
           .withColumn("outcome", F.lit("contact")).withColumn("channel", F.lit("sms_push")).withColumn("channel_kind", F.lit("active")))
    lake.replace(d.unionByName(bad).localCheckpoint(), paths, "gold.cpc_decisions", cond)
    with pytest.raises(export.ExportError, match="sms_push: 1 rows break the contact policy"):
        export.run(spark, paths, day)
    assert links() == before
