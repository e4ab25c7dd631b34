"""The simulated campaign platform: responses follow the hidden truth, land on the right days and files, and a
second run for a day writes the same bytes. No Spark: lists are written the way the export publishes them."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io

import numpy as np
import pytest

from jobs.platform.config import Paths
from schemas import DELIMITER, FILES
from simulator.generate import SimSpec, generate
from simulator.responder import MAX_DELAY, OUTBOUND, World, events_for, read_lists, respond

SPEC = SimSpec(customers=6000, days=12, end_date=dt.date(2026, 11, 20), seed=5)
DECIDED = SPEC.end_date - dt.timedelta(days=6)


def _publish(paths: Paths, world: World, day: dt.date, rows: list[tuple[int, str, str]]) -> None:
    """A published SMS list (contact_ref, msisdn, template_id, params) and call list, as jobs/stages/export.py writes them."""
    folder = paths.export_day(day)
    for ch in ("sms_push", "outbound_call"):
        mine = [r for r in rows if r[2] == ch]
        (folder / ch).mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        w = csv.writer(buf)
        if ch == "sms_push":
            w.writerow(["contact_ref", "msisdn", "template_id", "params"])
            for k, prod, _ in mine:
                ref = hashlib.sha256(f"{day}{k}{ch}".encode()).hexdigest()[:20]
                w.writerow([ref, world.c["msisdn"][k], f"T_SMS_PUSH_CPC_DAILY_{prod}", f"offer=x;price=1;product={prod};ref={ref}"])
        else:
            w.writerow(["contact_ref", "customer_id", "msisdn", "campaign_id", "product_id"])
            for k, prod, _ in mine:
                ref = hashlib.sha256(f"{day}{k}{ch}".encode()).hexdigest()[:20]
                w.writerow([ref, world.c["customer_id"][k], world.c["msisdn"][k], "contract_renewal", prod])
        (folder / ch / f"{ch}_{day:%Y%m%d}.csv.gz").write_bytes(gzip.compress(buf.getvalue().encode(), mtime=0))
    (folder / "_SUCCESS").touch()


@pytest.fixture(scope="module")
def world_paths(tmp_path_factory):
    paths = Paths(tmp_path_factory.mktemp("responder"))
    generate(paths, SPEC, progress=False)
    world = World.load(SPEC)
    rows = [(k, "P_DATA_5G", "sms_push") for k in range(0, 5000)] + [(k, "R_RENEW_BONUS", "outbound_call") for k in range(5000, 6000)]
    _publish(paths, world, DECIDED, rows)
    return world, paths


def test_lists_are_read_as_a_downstream_system_sees_them(world_paths):
    world, paths = world_paths
    lists = read_lists(paths, world, DECIDED)
    assert len(lists["ref"]) == 6000
    assert set(lists["channel"]) == {"sms_push", "outbound_call"}
    assert list(lists["idx"][:3]) == [0, 1, 2], "SMS rows are matched by phone number"
    assert set(lists["campaign"]) == {"cpc_daily", "contract_renewal"}, "campaign from the template or the column"


def test_responses_follow_the_truth(world_paths):
    world, paths = world_paths
    lists = read_lists(paths, world, DECIDED)
    ev = events_for(world, lists, DECIDED)
    sms = lists["channel"] == "sms_push"
    delivered = np.isin(lists["ref"][sms], ev["ref"][ev["event"] == "delivered"]).mean()
    assert delivered == pytest.approx(0.97, abs=0.02)
    p = world.p_convert(lists["idx"], lists["prod"], lists["channel"], DECIDED)
    accepted = np.isin(lists["ref"], ev["ref"][ev["event"] == "accepted"])
    assert accepted.sum() == pytest.approx(p.sum(), abs=4 * np.sqrt(p.sum()) + 2), "acceptances match the true probability"
    # interest drives acceptance: the top quarter by hidden data affinity accepts far more often than the bottom
    aff = world.c["affinity"]["data"][lists["idx"][sms]]
    top, bottom = aff >= np.quantile(aff, 0.75), aff <= np.quantile(aff, 0.25)
    assert p[sms][top].mean() > 5 * p[sms][bottom].mean()
    # the campaign platform's events happen after the list is sent, within the delays (``leaves``, a closure a
    # contact provokes, comes weeks later and is no platform event)
    platform = ev["event"] != "leaves"
    assert min(ev["day"][platform]) == DECIDED + dt.timedelta(days=1)
    assert max(ev["day"][platform]) <= DECIDED + dt.timedelta(days=MAX_DELAY)
    assert set(ev["event"]) >= {"delivered", "failed", "opened", "accepted", "declined"}


def test_a_day_is_written_as_files_the_pipeline_ingests_and_again_the_same(world_paths):
    world, paths = world_paths
    day = DECIDED + dt.timedelta(days=1)
    respond(paths, SPEC, day, world)
    files = [paths.landing_day(day) / FILES[k].file_name(day) for k in ("responses", "orders", "optouts")]
    first = [f.read_bytes() for f in files]
    respond(paths, SPEC, day, world)
    assert [f.read_bytes() for f in files] == first, "a rerun for the day writes the same bytes"
    resp = gzip.decompress(first[0]).decode().splitlines()
    assert resp[0] == DELIMITER.join(FILES["responses"].names)
    ctl = (paths.landing_day(day) / FILES["responses"].control_name(day)).read_text()
    assert f"rows={len(resp) - 1}" in ctl and hashlib.md5(first[0]).hexdigest() in ctl  # noqa: S324 - as the control file
    events = [line.split(DELIMITER) for line in resp[1:]]
    assert all(e[2].startswith(day.isoformat()) for e in events), "every event on the file's date"
    accepted = {e[5] for e in events if e[4] == "accepted"}
    orders = gzip.decompress(first[1]).decode().splitlines()
    campaign_orders = [o.split(DELIMITER) for o in orders if o.startswith("R")]
    assert accepted and {o[0] for o in campaign_orders} == accepted, "each acceptance is an order in the orders file"
    assert {o[5] for o in campaign_orders} <= set(OUTBOUND), "sold through the outbound channel"
    base = gzip.decompress((paths.truth / "landing_base" / day.isoformat() / FILES["orders"].file_name(day)).read_bytes()).decode()
    assert len(orders) == len(base.splitlines()) + len(campaign_orders), "the operator's own orders are all still there"


def test_nothing_is_answered_before_a_list_goes_out(world_paths):
    world, paths = world_paths
    counts = respond(paths, SPEC, DECIDED, world)
    assert sum(counts.values()) == 0
    lines = gzip.decompress((paths.landing_day(DECIDED) / FILES["responses"].file_name(DECIDED)).read_bytes()).decode().splitlines()
    assert lines == [DELIMITER.join(FILES["responses"].names)], "a day without campaign events: the header only"


def test_only_persuadables_respond_and_sleeping_dogs_are_pushed_away(world_paths):
    """Persuadables buy only when contacted (they have no unprompted orders, tests/test_simulator.py); sure things,
    lost causes and sleeping dogs never accept; a contact makes sleeping dogs opt out and leave."""
    from simulator.generate import PERSUADABLE, RESPONSE_FAMILIES

    world, _paths = world_paths
    lists = read_lists(_paths, world, DECIDED)
    p = world.p_convert(lists["idx"], lists["prod"], lists["channel"], DECIDED)
    fam = np.array([RESPONSE_FAMILIES.index(world.products[j]["category"]) for j in lists["prod"]])
    persuadable = (world.c["response"][lists["idx"], fam] == PERSUADABLE) & ~world.c["sleeping_dog"][lists["idx"]]
    assert (p[~persuadable] == 0).all() and (p[persuadable] > 0).mean() > 0.9
    assert np.array_equal(world.uplift(lists["idx"], lists["prod"], lists["channel"], DECIDED), p)
    # sleeping dogs: every customer contacted once by SMS, several decision days pooled
    n = world.spec.customers
    plan = np.full(n, world.product_index["P_PLAN_UP"], dtype=np.int64)  # a family of dog_contact_families
    big = {"ref": np.array([f"r{k}" for k in range(n)], dtype=object), "idx": np.arange(n), "prod": plan,
           "channel": np.full(n, "sms_push", dtype=object), "campaign": np.full(n, "cpc_daily", dtype=object)}
    dog = world.c["sleeping_dog"]
    out, leave, seen = np.zeros(n), np.zeros(n), 0
    for back in range(4):
        ev = events_for(world, big, DECIDED - dt.timedelta(days=back))
        out[ev["idx"][ev["event"] == "opted_out"].astype(int)] += 1
        leave[ev["idx"][ev["event"] == "leaves"].astype(int)] += 1
        seen += 1
    assert out[dog].mean() > 5 * out[~dog].mean() > 0
    assert leave[~dog].sum() == 0
    assert leave[dog].mean() / seen == pytest.approx(0.35 * 0.97, abs=0.05), "dog_contact_churn_prob of the delivered"


def test_fatigue_lowers_response_with_repeated_contacts(world_paths):
    world, paths = world_paths
    lists = read_lists(paths, world, DECIDED)
    fresh = world.p_convert(lists["idx"], lists["prod"], lists["channel"], DECIDED, prior=np.zeros(len(lists["idx"])))
    tired = world.p_convert(lists["idx"], lists["prod"], lists["channel"], DECIDED, prior=np.full(len(lists["idx"]), 4))
    decay = world.params.fatigue_response_decay
    m = fresh > 0
    assert np.allclose(tired[m] / fresh[m], np.exp(-decay * 4) ** 2, rtol=0.05)
    n = len(lists["idx"])
    ev0 = events_for(world, lists, DECIDED, prior=np.zeros(world.spec.customers, dtype=int))
    ev4 = events_for(world, lists, DECIDED, prior=np.full(world.spec.customers, 4))
    opened0, opened4 = (ev0["event"] == "opened").sum(), (ev4["event"] == "opened").sum()
    assert opened4 < 0.7 * opened0 and n > 0
    assert (ev4["event"] == "opted_out").sum() > (ev0["event"] == "opted_out").sum()
    # counted from the lists published before: the fixture's one list counts for the days after it
    prior = world.prior_contacts(paths, DECIDED + dt.timedelta(days=1))
    assert prior[lists["idx"]].min() == 1 and prior.sum() == n


def test_a_contact_provoked_closure_reaches_the_files(tmp_path):
    """A sleeping dog whose contact makes them leave: closed in that day's CRM file, absent from then on."""
    import pyarrow.parquet as pq

    from simulator.responder import read_delivery

    spec = SimSpec(customers=3000, days=20, end_date=dt.date(2026, 11, 20), seed=9)
    paths = Paths(tmp_path)
    generate(paths, spec, progress=False)
    world = World.load(spec)
    decided = spec.start_date
    dogs = np.flatnonzero(world.c["sleeping_dog"] & world.alive(spec.end_date))
    _publish(paths, world, decided, [(int(k), "P_PLAN_UP", "sms_push") for k in dogs])  # a plan offer: the full rate
    for d in spec.dates()[1:]:
        respond(paths, spec, d, world)
    closed = pq.read_table(paths.truth / "contact_churn.parquet").to_pandas()
    assert len(closed) > 10 and set(closed["customer_id"]) <= set(world.c["customer_id"][dogs])
    inside = closed[closed["close_date"] <= spec.end_date]
    assert len(inside) >= 1
    for _, row in inside.iterrows():
        day = row["close_date"]
        crm = read_delivery(paths.landing_day(day) / FILES["crm_profile"].file_name(day), "crm_profile").to_pandas()
        assert (crm.loc[crm["customer_id"] == row["customer_id"], "status"] == "closed").all()
        assert (crm["customer_id"] == row["customer_id"]).sum() == 1
        for later in [d for d in spec.dates() if d >= day]:
            usage = read_delivery(paths.landing_day(later) / FILES["usage"].file_name(later), "usage")
            assert row["customer_id"] not in set(usage["customer_id"].to_pylist())
    assert not World.load(spec, paths).alive(spec.end_date)[[int(c[1:]) for c in inside["customer_id"]]].any()
