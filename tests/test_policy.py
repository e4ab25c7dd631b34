"""The contact policy, rule by rule, on hand-written customers; capacity assignment on a case with a known
answer; campaigns and policy configuration errors."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter

import pytest
from pyspark.sql import functions as F

from jobs.platform.errors import ConfigError
from jobs.stages import cpc, segments
from jobs.stages.cpc import campaigns as campaign_conf
from jobs.stages.cpc import fits
from jobs.stages.tags import apply_tags, load_catalogue
from tests.helpers import SNAPSHOT, base_frame

D = dt.timedelta
OLD = SNAPSHOT - D(days=1000)
ACTIVE = {"days_since_out_calls": 0, "usage_days_7d": 7, "voice_out_min_7d": 70, "voice_out_min_prev23d": 230,
          "total_fee_30d": 40.0, "birth_year": 1990, "has_wechat": True, "activation_date": OLD, "credit_level": 4}


@pytest.fixture(scope="module")
def conf():
    products, channels, categories, camps, policy = cpc.load_conf()
    pc = fits.product_channel_fits(products, channels, categories, {}, {})
    return {"products": products, "channels": channels, "categories": categories, "camps": camps, "policy": policy,
            "pc_fit": {(r["product_id"], r["channel"]): r["fit"] for r in pc}}


@pytest.fixture(scope="module")
def cat():
    return load_catalogue()


def decided_frame(spark, tagged, conf, ids, extra=None, policy=None, channels=None, camps=None, notes=None, factors=None,
                  harm=None):
    """Hand-written customers (their ids in ``tagged``) -> every candidate with its outcome (a DataFrame).
    ``extra`` adds per-customer input columns the pipeline derives from history (recent contacts, declines,
    open trials, uplift scores); ``notes``, ``factors``: per family, the cold-start text of fit_source and the
    incrementality factor (inputs.cold_start_ranking); ``harm``: the closure guard's (campaign, product) -> text."""
    channels = channels or conf["channels"]
    policy = policy or conf["policy"]
    cands = candidates_frame(spark, tagged, conf, ids, extra, policy, channels, camps, notes, factors, harm)
    return cpc.decide(cands, channels, policy, log=lambda *_: None)


def candidates_frame(spark, tagged, conf, ids, extra=None, policy=None, channels=None, camps=None, notes=None, factors=None,
                     harm=None):
    """As :func:`decided_frame`, the candidates before the decision (row-level outcomes only)."""
    frame = tagged.where(F.col("customer_id").isin(sorted(ids)))
    if extra:
        frame = frame.join(spark.createDataFrame(extra[1], extra[0]), on="customer_id", how="left")
    channels, camps = channels or conf["channels"], camps or conf["camps"]
    combo = cpc.combos(spark, conf["products"], channels, camps, conf["pc_fit"], SNAPSHOT, uplift_notes=notes, incrementality=factors,
                       closure_harm=harm)
    return cpc.candidates(frame, conf["products"], channels, camps, policy or conf["policy"], combo, SNAPSHOT)


def decide(spark, tagged, conf, ids, extra=None, policy=None, channels=None, camps=None, notes=None, factors=None, harm=None):
    """As :func:`decided_frame`, as dicts."""
    got = decided_frame(spark, tagged, conf, ids, extra, policy=policy, channels=channels, camps=camps, notes=notes, factors=factors,
                        harm=harm)
    return [r.asDict() for r in got.collect()]


def outcomes(decided, customer, **match):
    return {r["outcome"] for r in decided if r["customer_id"] == customer and all(r[k] == v for k, v in match.items())}


def in_global_holdout(conf, cid):
    """Python's reading of the global holdout (conf/policy.yaml global_holdout), as the decision draws it."""
    policy = conf["policy"]
    return campaign_conf.holdout_bucket(policy.holdout_salt, campaign_conf.GLOBAL_HOLDOUT, cid) < policy.global_holdout * 10000


def in_holdout(conf, cid, campaign="cpc_daily"):
    share = next(c.holdout for c in conf["camps"] if c.id == campaign)
    return campaign_conf.holdout_bucket(conf["policy"].holdout_salt, campaign, cid) < share * 10000


def in_exploration(conf, cid, campaign="cpc_daily"):
    """Python's reading of the campaign's exploration bucket (conf/policy.yaml exploration, right above its holdout)."""
    share = next(c.holdout for c in conf["camps"] if c.id == campaign)
    return campaign_conf.in_exploration(conf["policy"].holdout_salt, campaign, cid, share, conf["policy"].exploration)


def not_holdout(conf, campaign="cpc_daily", prefix="c"):
    """A customer id outside the campaign's holdout and exploration bucket and outside the global holdout (so the
    other rules can be seen as they apply to everyone)."""
    for i in range(1000):
        cid = f"{prefix}{i}"
        if not in_holdout(conf, cid, campaign) and not in_exploration(conf, cid, campaign) and not in_global_holdout(conf, cid):
            return cid
    raise AssertionError


def explorer(conf, prefix, campaign="cpc_daily", globally=False):
    """A customer id in the campaign's exploration bucket, outside the global holdout (``globally``: inside it)."""
    return next(f"{prefix}{i}" for i in range(100_000)
                if in_exploration(conf, f"{prefix}{i}", campaign) and in_global_holdout(conf, f"{prefix}{i}") == globally)


# The rule tests below read one decision over all their hand-written customers (ids of their own, history
# columns null where a test gives none, as the pipeline's inputs are): one Spark run instead of one per test.
# The channels' capacity is 1 a day each, as in a run over no customers, so customers may take each other's
# place; no assertion here depends on who got the place (capacity has its own tests below).
EXTRA = ("customer_id string, days_since_decline int, recent_by_campaign map<string,int>, "
         "trial_product_id string, trial_day int")


@pytest.fixture(scope="module")
def people(conf):
    """Each test's customers: key -> (customer_id, tag inputs, history columns)."""
    quiet, cool = conf["policy"].quiet_days, conf["policy"].cooldown_days
    # cpc_daily's holdout members outside the global holdout (which would take them first)
    held = sorted(f"h{i}" for i in range(400) if in_holdout(conf, f"h{i}") and not in_global_holdout(conf, f"h{i}"))
    # a global holdout member outside cpc_daily's holdout (held out of every campaign by the global one alone)
    held_globally = next(f"g{i}" for i in range(2000) if in_global_holdout(conf, f"g{i}") and not in_holdout(conf, f"g{i}"))
    trial = {"trial_product_id": "P_MUSIC", "trial_day": 15}
    who = {
        "opt_all": (not_holdout(conf, prefix="oa"), {"optouts": ["all"]}, {}),
        "opt_sms": (not_holdout(conf, prefix="os"), {"optouts": ["sms_push"]}, {}),
        "unreachable": (not_holdout(conf, prefix="ur"), {"has_wechat": False, "email": None}, {}),
        "tier": ("oc", {"open_complaints": 1}, {}),
        **{k: (not_holdout(conf, prefix=k), {"vip_level": 3 if k[0] == "k" else 1, "open_complaints": int(k[1] == "c")}, trial)
           for k in ("kc", "vc", "kn", "vn")},
        "on20": ("on20", {"activation_date": SNAPSHOT - D(days=20)}, {}),
        "on60": ("on60", {"activation_date": SNAPSHOT - D(days=60)}, {}),
        "not_eligible": (not_holdout(conf, prefix="ne"), {"credit_level": 1, "held_products": ["P_NEWS"]}, {}),
        "quiet_after": (not_holdout(conf, prefix="qa"), {"activation_date": SNAPSHOT - D(days=quiet)}, {}),
        "quiet_in": (not_holdout(conf, prefix="qi"), {"activation_date": SNAPSHOT - D(days=quiet - 1)}, {}),
        "declined_3": (not_holdout(conf, prefix="d3"), {}, {"days_since_decline": 3}),
        "declined_edge": (not_holdout(conf, prefix="de"), {}, {"days_since_decline": cool - 1}),
        "declined_later": (not_holdout(conf, prefix="dl"), {}, {"days_since_decline": cool}),
        "recent": (not_holdout(conf, prefix="rc"), {}, {"recent_by_campaign": {"cpc_daily": 2}}),
        "no_value": (not_holdout(conf, prefix="nv"), {}, {}),
        **{f"held{i}": (c, {}, {}) for i, c in enumerate(held[:2])},
        "global": (held_globally, {}, {}),
        "frequent": (not_holdout(conf, prefix="fr"), {"contacts_app_30d": 20}, {}),
        "never": (not_holdout(conf, prefix="nc"), {}, {}),
        **{f"one_{p}": (not_holdout(conf, prefix=p), {"email": f"{p}@x.cn"}, {}) for p in "pqrs"},
        "trial": (not_holdout(conf, "trial_feedback", prefix="t"), {}, trial),
    }
    ids = [c for c, _, _ in who.values()]
    assert len(ids) == len(set(ids)), "each test's customers are its own"
    assert [k for k, (c, _, _) in who.items() if in_global_holdout(conf, c)] == ["global"], "only one globally held out"
    return {"who": who, "in_holdout": held}


def rows_of(people, keys=None):
    """The customers' tag inputs and history rows (all of them, or those of ``keys``)."""
    chosen = [v for k, v in people["who"].items() if keys is None or k in keys]
    rows = [{"customer_id": c, **ACTIVE, **inputs} for c, inputs, _ in chosen]
    names = [f.split()[0] for f in EXTRA.split(", ")][1:]
    history = [(c, *[h.get(n) for n in names]) for c, _, h in chosen]
    return rows, (EXTRA, history)


def frequency_rows(conf):
    """Two customers for the frequency caps (their recent contacts are the test's own history columns)."""
    return [{"customer_id": not_holdout(conf, prefix=p), **ACTIVE} for p in "ab"]


def capacity_rows(conf):
    return [{"customer_id": not_holdout(conf, prefix=f"k{i}_"), **ACTIVE, "email": f"k{i}@x.cn"} for i in range(6)]


def exploration_rows(conf):
    """Issue 22: cpc_daily's exploration bucket: a plain member, one opted out of everything, one at the weekly
    cap (history columns in its test), one in the global holdout, and a twin outside the bucket with the same
    inputs."""
    return {"plain": {"customer_id": explorer(conf, "xp"), **ACTIVE}, "opted": {"customer_id": explorer(conf, "xo"), **ACTIVE, "optouts": ["all"]},
            "capped": {"customer_id": explorer(conf, "xc"), **ACTIVE}, "held": {"customer_id": explorer(conf, "xg", globally=True), **ACTIVE},
            "twin": {"customer_id": not_holdout(conf, prefix="xt"), **ACTIVE}}


def held_member(conf, prefix, campaign="cpc_daily"):
    """A customer id in the campaign's holdout, outside the global holdout."""
    return next(f"{prefix}{i}" for i in range(100_000)
                if in_holdout(conf, f"{prefix}{i}", campaign) and not in_global_holdout(conf, f"{prefix}{i}"))


def eligibility_rows(conf):
    """Issue 22 review: cpc_daily's holdout and exploration buckets, each with a member whose active candidates the
    campaign's repeat interval removes (history columns in its test) and one it does not."""
    return {"held_blocked": {"customer_id": held_member(conf, "eh"), **ACTIVE}, "held_open": {"customer_id": held_member(conf, "ei"), **ACTIVE},
            "explorer_blocked": {"customer_id": explorer(conf, "eb"), **ACTIVE}, "explorer_open": {"customer_id": explorer(conf, "eo"), **ACTIVE}}


def uplift_rows(conf):
    """Issue 22: customers outside cpc_daily's holdouts and exploration bucket, for the uplift scores of their tests."""
    return {k: {"customer_id": not_holdout(conf, prefix=p), **ACTIVE} for k, p in (("hurt", "uh"), ("helped", "ug"), ("plain", "up"))}


@pytest.fixture(scope="module")
def tagged(spark, cat, conf, people):
    """The tags and segments of every hand-written customer of this module, computed once (each test's
    decision reads its own customers from it)."""
    _, tiers = segments.rules()
    rows = (rows_of(people)[0] + frequency_rows(conf) + capacity_rows(conf) + list(exploration_rows(conf).values())
            + list(uplift_rows(conf).values()) + list(eligibility_rows(conf).values()))
    assert len({r["customer_id"] for r in rows}) == len(rows), "each test's customers are its own"
    tags = apply_tags(base_frame(spark, cat, rows), cat)
    return tags.join(segments.segment(tags, tiers).drop("snapshot_date"), on="customer_id").localCheckpoint()


@pytest.fixture(scope="module")
def day_frame(spark, tagged, conf, people):
    """Every candidate of every customer in ``people``, with its outcome (a DataFrame, computed once)."""
    rows, extra = rows_of(people)
    return decided_frame(spark, tagged, conf, [r["customer_id"] for r in rows], extra).localCheckpoint()


@pytest.fixture(scope="module")
def day(day_frame):
    """:func:`day_frame` as dicts."""
    return [r.asDict() for r in day_frame.collect()]


def mine(day, people, key, **match):
    """The decided rows of one test customer (matching ``match``)."""
    cid = people["who"][key][0]
    return [r for r in day if r["customer_id"] == cid and all(r[k] == v for k, v in match.items())]


def seen(day, people, key, **match):
    return {r["outcome"] for r in mine(day, people, key, **match)}


def test_opt_out_of_all_channels_is_absolute(day, people):
    got = mine(day, people, "opt_all")
    assert got and {r["outcome"] for r in got} == {"opt_out"}


def test_opt_out_of_one_channel_removes_that_channel_only(day, people):
    assert seen(day, people, "opt_sms", channel="sms_push") == {"opt_out"}
    assert "opt_out" not in seen(day, people, "opt_sms", channel="wechat")


def test_unreachable_channel(day, people):
    assert seen(day, people, "unreachable", channel="wechat") == {"unreachable"}
    assert seen(day, people, "unreachable", channel="email") == {"unreachable"}


def test_tier_without_marketing(day, people):
    got = seen(day, people, "tier")
    assert "tier_no_marketing" in got
    assert got <= {"opt_out", "unreachable", "tier_no_marketing"}, "only the absolutes before it"


def test_open_complaint_stops_a_vip_or_key_customer_unless_the_campaign_opts_in(spark, tagged, conf, day, people):
    """Issue 20: a key customer and a VIP with an open complaint rank above the open-complaint tier, whose
    marketing is allowed; the open_complaint rule removes every candidate of theirs, offers and service
    messages alike (an open trial makes trial_feedback target them). The same customers without a complaint
    are not removed by it, and a campaign that says while_complaint_open still reaches the complainers."""
    keys = ("kc", "vc", "kn", "vn")
    tiers = {k: {r["service_tier"] for r in mine(day, people, k)} for k in keys}
    assert tiers == {"kc": {"key_customer"}, "vc": {"vip"}, "kn": {"key_customer"}, "vn": {"vip"}}
    for k in ("kc", "vc"):
        got = seen(day, people, k)
        assert "open_complaint" in got and got <= {"opt_out", "unreachable", "open_complaint"}, k
        assert "open_complaint" in seen(day, people, k, campaign_kind="message"), "service messages too"
    for k in ("kn", "vn"):
        got = seen(day, people, k)
        assert "open_complaint" not in got and got & {"contact", "placement"}, k

    opted = [dataclasses.replace(c, while_complaint_open=True) if c.id == "cpc_daily" else c
             for c in conf["camps"]]
    rows, extra = rows_of(people, keys)
    again = decide(spark, tagged, conf, [r["customer_id"] for r in rows], extra, camps=opted)
    for k in ("kc", "vc"):
        daily = seen(again, people, k, campaign_id="cpc_daily")
        assert "open_complaint" not in daily and daily & {"contact", "placement"}, k
        feedback = seen(again, people, k, campaign_id="trial_feedback")
        assert "open_complaint" in feedback, "only the campaign that opted in"


def guard(spark, cases):
    """export.violates on SMS contact rows of a customer opted in and in a tier with marketing: each case is
    (name, in_holdout, in_global_holdout, svc_open_complaint, while_complaint_open) -> {name: refused}."""
    from jobs.stages import export

    df = spark.createDataFrame(
        [(name, "contact", "sms_push", False, False, True, *rest) for name, *rest in cases],
        "name string, outcome string, channel string, cp_optout_all boolean, cp_optout_sms_push boolean, "
        "tier_marketing_allowed boolean, in_holdout boolean, in_global_holdout boolean, svc_open_complaint boolean, "
        "while_complaint_open boolean")
    return {r["name"]: r["bad"] for r in df.select("name", export.violates(df.columns).alias("bad")).collect()}


def test_export_guard_refuses_an_open_complaint_unless_the_campaign_allows_it(spark):
    """export.violates, the lists' last guard: an open complaint (or an unknown complaint status) is refused
    unless the row's campaign says while_complaint_open (unknown campaign: not allowed)."""

    # (case, svc_open_complaint, while_complaint_open, refused)
    cases = [("complaint", True, False, True), ("complaint, opted in", True, True, False),
             ("none", False, False, False), ("none, opted in", False, True, False),
             ("unknown status", None, False, True), ("unknown campaign", True, None, True)]
    got = guard(spark, [(name, False, False, oc, ok) for name, oc, ok, _ in cases])
    assert got == {name: bad for name, _, _, bad in cases}


def test_export_guard_refuses_a_global_holdout_member(spark, conf, people):
    """export.held_out recomputes both holdouts from the salt (the campaign's, and the global one for every
    campaign), as Python draws them; export.violates refuses a row in either (unknown: refused too)."""
    from jobs.stages import export

    g, h, n = (people["who"][k][0] for k in ("global", "held0", "never"))
    share = {c.id: c.holdout for c in conf["camps"]}
    base = spark.createDataFrame([(c, camp, share[camp]) for c in (g, h, n) for camp in ("cpc_daily", "vas_growth")],
                                 "customer_id string, campaign_id string, holdout_share double")
    got = {(r["customer_id"], r["campaign_id"]): (r["in_holdout"], r["in_global_holdout"])
           for r in base.withColumns(export.held_out(conf["policy"])).collect()}
    assert got == {(c, camp): (in_holdout(conf, c, camp), in_global_holdout(conf, c)) for c, camp in got}
    assert got[(g, "cpc_daily")] == (False, True) and got[(g, "vas_growth")][1] and got[(h, "cpc_daily")] == (True, False)
    # (case, in_holdout, in_global_holdout, refused)
    cases = [("clean", False, False, False), ("campaign holdout", True, False, True), ("global holdout", False, True, True),
             ("both", True, True, True), ("global unknown", False, None, True)]
    bad = guard(spark, [(name, held, glob, False, False) for name, held, glob, _ in cases])
    assert bad == {name: refused for name, _, _, refused in cases}


def test_global_holdout_share_is_checked_naming_the_file_and_field():
    """Spark-free: global_holdout is a share in [0, 0.5), 0 when absent (older configurations load); anything
    else is refused naming conf/policy.yaml and the field. __global__ is no campaign's id."""
    from jobs.platform.config import business

    raw = dict(business("policy"))
    assert campaign_conf.load_policy(raw).global_holdout == pytest.approx(0.02)
    assert campaign_conf.load_policy({k: v for k, v in raw.items() if k != "global_holdout"}).global_holdout == 0.0
    assert campaign_conf.load_policy({**raw, "global_holdout": 0}).global_holdout == 0.0
    for bad in (0.7, 0.5, -0.1, "some"):
        with pytest.raises(ConfigError, match=r"^conf/policy\.yaml: global_holdout: "):
            campaign_conf.load_policy({**raw, "global_holdout": bad})
    good = {"id": "__global__", "target": "true", "products": ["P_NEWS"], "channels": ["sms_push"], "start": "2026-01-01",
            "holdout": 0.1}
    with pytest.raises(ConfigError, match=r"^conf/campaigns/g\.yaml: id: '__global__' is reserved"):
        campaign_conf.parse(good, "conf/campaigns/g.yaml", ["P_NEWS"], ["sms_push"], set())


def test_open_complaint_rule_sits_right_after_tier_no_marketing():
    """Spark-free: the rule order (RULES; the funnel's STEPS and docs/cpc.md follow it), and the tag the rule
    and the export guard read is declared among the tags code reads."""
    import re
    from pathlib import Path

    from jobs.stages.tags.catalogue import CODE_TAGS

    rules = campaign_conf.RULES
    assert rules.index("open_complaint") == rules.index("tier_no_marketing") + 1
    assert "open_complaint" in cpc.ROW_RULES and cpc.STEPS[: len(rules)] == rules
    assert "svc_open_complaint" in CODE_TAGS
    doc = (Path(__file__).resolve().parents[1] / "docs" / "cpc.md").read_text(encoding="utf-8")
    table = re.findall(r"^\| (\d+) \| `(\w+)` \|", doc, flags=re.M)
    assert [rule for _, rule in table] == list(rules)
    assert [int(n) for n, _ in table] == list(range(1, len(rules) + 1))


def test_while_complaint_open_must_be_a_boolean_naming_the_file_and_field(tmp_path):
    """Spark-free: the campaign's opt-in flag is optional (default false), true or false only; anything else
    is refused with the file and the field named."""
    folder = tmp_path / "campaigns"
    folder.mkdir()
    body = ("id: x\ntarget: 'true'\nproducts: [P_NEWS]\nchannels: [sms_push]\n"
            "start: 2026-01-01\nholdout: 0.1\n")

    def load():
        return campaign_conf.load(["P_NEWS"], ["sms_push"], set(), folder=folder)

    for value, want in [(None, False), ("true", True), ("false", False)]:
        (folder / "x.yaml").write_text(body + (f"while_complaint_open: {value}\n" if value else ""))
        assert load()[0].while_complaint_open is want
    for bad in ("sometimes", "'true'", "1", ""):
        (folder / "x.yaml").write_text(body + f"while_complaint_open: {bad}\n")
        field = r"campaigns/x\.yaml: campaign x: while_complaint_open: "
        with pytest.raises(ConfigError, match=field) as exc:
            load()
        assert "boolean" in str(exc.value), bad


def test_stage_rule_no_selling_in_onboarding_but_the_second_contact_campaign(day, people):
    assert "stage_rule" in seen(day, people, "on20", campaign_id="cpc_daily", product_id="P_DATA_5G")
    assert seen(day, people, "on20", campaign_id="cpc_daily", product_id="P_DATA_5G") <= {"stage_rule", "unreachable"}
    assert "stage_rule" not in seen(day, people, "on20", campaign_id="new_customer_guide")  # the guide is a message
    assert "stage_rule" not in seen(day, people, "on60", campaign_id="new_customer_offer", product_id="P_SMS_200")
    assert "stage_rule" in seen(day, people, "on60", campaign_id="cpc_daily", product_id="P_SMS_200")


def test_not_eligible_and_already_held(day, people):
    assert seen(day, people, "not_eligible", campaign_id="cpc_daily", product_id="P_HANDSET_5G") <= {"not_eligible", "stage_rule"}
    assert "not_eligible" in seen(day, people, "not_eligible", product_id="P_HANDSET_5G")
    assert seen(day, people, "not_eligible", product_id="P_NEWS") <= {"already_held", "opt_out", "unreachable", "stage_rule"}
    assert "already_held" in seen(day, people, "not_eligible", product_id="P_NEWS")


def test_quiet_period_after_activation_stops_active_contacts_only(day, people):
    assert "quiet_period" not in seen(day, people, "quiet_after")
    active = seen(day, people, "quiet_in", channel_kind="active")
    assert "quiet_period" in active and active <= set(cpc.RULES[: cpc.RULES.index("quiet_period") + 1])
    assert "quiet_period" not in seen(day, people, "quiet_in", channel_kind="passive")


def test_cooldown_after_a_decline(day, people):
    assert "cooldown_after_decline" in seen(day, people, "declined_3")
    assert not seen(day, people, "declined_3", channel_kind="active") & {"contact", "capacity", "frequency_cap"}
    assert "cooldown_after_decline" in seen(day, people, "declined_edge")  # cooldown_days - 1 days ago
    assert "cooldown_after_decline" not in seen(day, people, "declined_later")  # cooldown_days ago


def test_frequency_caps_per_channel_and_across_channels(spark, tagged, conf):
    a, b = (r["customer_id"] for r in frequency_rows(conf))
    extra = ("customer_id string, recent_total int, recent_by_channel map<string,int>",
             [(a, 2, {"sms_push": 1, "wechat": 1}), (b, 1, {"sms_push": 1})])
    # a: two contacts this week reach the cross-channel cap (2). b: one SMS reaches an SMS cap of 1 (set here),
    # while one contact in all is under the cross-channel cap.
    cap = dataclasses.replace(conf["policy"], per_channel_cap={**conf["policy"].per_channel_cap, "sms_push": 1})
    got = decide(spark, tagged, conf, [a, b], extra, policy=cap)
    assert {r["outcome"] for r in got if r["customer_id"] == a and r["channel_kind"] == "active"} <= {"frequency_cap", "unreachable", "opt_out", "recently_contacted", "stage_rule", "not_eligible", "already_held"}
    assert "frequency_cap" in outcomes(got, a, channel="wechat")
    assert "frequency_cap" in outcomes(got, b, channel="sms_push")
    assert "frequency_cap" not in outcomes(got, b, channel="wechat")


def test_recently_contacted_by_the_campaign(day, people):
    active = seen(day, people, "recent", campaign_id="cpc_daily", channel_kind="active")
    assert "recently_contacted" in active and "contact" not in active


def test_no_value_when_the_contact_costs_more_than_it_can_bring(day, people):
    assert "no_value" in seen(day, people, "no_value", channel="outbound_call")
    assert all(r["expected_value"] <= 0 or r["fit_customer_product"] <= 0 for r in day if r["outcome"] == "no_value")


def test_holdout_is_stable_recorded_and_never_contacted(spark, conf, day, people):
    camp = next(c for c in conf["camps"] if c.id == "cpc_daily")
    ids = [f"h{i}" for i in range(400)]
    expected = {c for c in ids if campaign_conf.holdout_bucket(conf["policy"].holdout_salt, camp.id, c) < camp.holdout * 10000}
    spark_buckets = {r["c"]: r["b"] for r in spark.createDataFrame([(c,) for c in ids], "c string").select(
        "c", cpc.holdout_bucket_col(conf["policy"].holdout_salt, F.lit(camp.id), F.col("c")).alias("b")).collect()}
    assert all(spark_buckets[c] == campaign_conf.holdout_bucket(conf["policy"].holdout_salt, camp.id, c) for c in ids)
    assert 5 <= len(expected) <= 40  # about 5% of 400
    for key in ("held0", "held1"):
        daily = seen(day, people, key, campaign_id="cpc_daily")
        assert "holdout" in daily and not daily & {"contact", "placement"}


def test_global_holdout_bucket_is_stable_about_its_share_and_not_a_campaign_holdout(conf):
    """Spark-free: the global holdout is the bucket of (salt, __global__, customer) below the share x 10000:
    about 2% of 4,000 ids, the same on every call, and drawn apart from cpc_daily's holdout (another set)."""
    policy = conf["policy"]
    assert campaign_conf.GLOBAL_HOLDOUT == "__global__" and policy.global_holdout == pytest.approx(0.02)
    ids = [f"x{i}" for i in range(4000)]

    def members():
        return {c for c in ids if campaign_conf.holdout_bucket(policy.holdout_salt, "__global__", c) < policy.global_holdout * 10000}

    first = members()
    assert first == members() and first == {c for c in ids if in_global_holdout(conf, c)}
    assert 0.012 <= len(first) / len(ids) <= 0.028, len(first)
    daily = {c for c in ids if in_holdout(conf, c)}
    assert daily and first != daily and first - daily, "its own draw, not a campaign's holdout"


def test_global_holdout_in_spark_matches_python_and_is_never_contacted(spark, conf, day, people):
    """The Spark bucket of __global__ (decide.in_global_holdout) equals Python's; the people fixture's global
    holdout member (outside cpc_daily's holdout) is removed by global_holdout from every campaign that would
    otherwise reach them: no contact, no placement, not even a campaign holdout (the global one comes first)."""
    policy = conf["policy"]
    ids = [f"x{i}" for i in range(400)]
    got = {r["c"]: (r["b"], r["g"]) for r in spark.createDataFrame([(c,) for c in ids], "c string").select(
        "c", cpc.holdout_bucket_col(policy.holdout_salt, F.lit("__global__"), F.col("c")).alias("b"),
        cpc.in_global_holdout(policy, F.col("c")).alias("g")).collect()}
    assert all(got[c] == (campaign_conf.holdout_bucket(policy.holdout_salt, "__global__", c), in_global_holdout(conf, c)) for c in ids)
    assert any(g for _, g in got.values())
    eligible = set(cpc.RULES[: cpc.RULES.index("global_holdout") + 1])  # the eligibility rules and the global holdout
    rows = mine(day, people, "global")
    assert "global_holdout" in {r["outcome"] for r in rows}
    for camp in {r["campaign_id"] for r in rows}:
        assert seen(day, people, "global", campaign_id=camp) <= eligible, camp
    assert "global_holdout" in seen(day, people, "global", campaign_id="cpc_daily")
    assert "global_holdout" not in {r["outcome"] for key in ("held0", "held1", "never") for r in mine(day, people, key)}


def test_global_holdout_is_recorded_once_per_customer_and_campaign(day_frame, people):
    """gold.cpc_decisions (decide.decisions) keeps, for a global holdout member, one row per campaign that
    would have reached them (the would-be first offer, outcome global_holdout), as for a campaign holdout
    member; gold.cpc_funnel counts the step."""
    from jobs.stages.cpc.decide import decisions, funnel_rows

    decided = day_frame
    g, h = (people["who"][k][0] for k in ("global", "held0"))
    held_by = {o: {(r["customer_id"], r["campaign_id"]) for r in decided.where(F.col("outcome") == o).collect()}
               for o in ("global_holdout", "holdout")}
    held = held_by["global_holdout"] | held_by["holdout"]
    got = [r.asDict() for r in decisions(decided, "run").collect()]
    mine_g = [r for r in got if r["customer_id"] == g]
    assert mine_g and {r["outcome"] for r in mine_g} == {"global_holdout"}
    assert sorted(r["campaign_id"] for r in mine_g) == sorted({c for cid, c in held if cid == g}), "one row per campaign"
    daily = [r for r in got if r["customer_id"] == h and r["campaign_id"] == "cpc_daily"]
    assert [r["outcome"] for r in daily] == ["holdout"]
    funnel = funnel_rows(decided, SNAPSHOT).where("grain = 'customer' and campaign_id = 'cpc_daily'").collect()
    members = {o: len({cid for cid, c in held_by[o] if c == "cpc_daily"}) for o in ("global_holdout", "holdout")}
    assert members["global_holdout"] >= 1 and members["holdout"] >= 1
    assert {r["step"]: r["count"] for r in funnel if r["step"] in ("global_holdout", "holdout")} == members


def test_the_decision_without_the_ineligible_candidates_changes_no_output(spark, tagged, conf, people):
    """The nightly decides on the candidates past the eligibility rules only (``past_eligibility``) and gives the
    funnel the others' counts (``ineligible``): gold.cpc_decisions, gold.cpc_offers and gold.cpc_funnel are the
    same rows as from every candidate, on customers that break each rule."""
    from jobs.stages.cpc.decide import (
        ELIGIBILITY,
        decisions,
        funnel_rows,
        ineligible,
        offers,
        past_eligibility,
    )

    rows, extra = rows_of(people)
    cands = candidates_frame(spark, tagged, conf, [r["customer_id"] for r in rows], extra).localCheckpoint()
    policy, quiet = conf["policy"], (lambda *_: None)
    every = cpc.decide(cands, conf["channels"], policy, log=quiet).localCheckpoint()
    kept = cpc.decide(past_eligibility(cands), conf["channels"], policy, log=quiet).localCheckpoint()
    removed = ineligible(cands).localCheckpoint()
    rules = {r["outcome"] for r in removed.select("outcome").distinct().collect()}
    assert rules == {r["outcome"] for r in every.select("outcome").distinct().collect()} & set(ELIGIBILITY)
    assert len(rules) >= 8, "the test customers break most eligibility rules"
    assert not {r["outcome"] for r in kept.select("outcome").distinct().collect()} & set(ELIGIBILITY)

    def same(a, b):
        got = Counter(map(tuple, a.collect()))
        assert got and got == Counter(map(tuple, b.select(*a.columns).collect()))

    same(decisions(every, "run"), decisions(kept, "run"))
    same(offers(every, policy.top_offers), offers(kept, policy.top_offers))
    same(funnel_rows(every, SNAPSHOT), funnel_rows(kept, SNAPSHOT, removed))


def test_the_holdouts_come_before_the_value_rules():
    """Spark-free (issue 22): both holdouts right after the eligibility rules (1-11), then harmed (before no_value,
    which a negative tau would always take first), then no_value; all row rules; and past both holdouts the value
    rules are selection (a pair they remove is not chosen, as one capacity leaves out)."""
    from jobs.stages.cpc.decide import SELECTION

    r = campaign_conf.RULES
    assert r[r.index("frequency_cap") + 1: r.index("passive_first")] == ("global_holdout", "holdout", "harmed", "no_value")
    assert cpc.ROW_RULES == r[: r.index("passive_first")]
    assert SELECTION[:2] == ("harmed", "no_value")


def test_exploration_bucket_is_stable_about_its_share_and_right_above_the_holdout(conf):
    """Spark-free (issue 22): cpc_daily's exploration bucket is the holdout draw's buckets [500, 700) (holdout 5%,
    exploration 2%): about 2% of 4,000 ids, the same on every call, never a holdout member; none with a share of 0."""
    policy = conf["policy"]
    assert policy.exploration == pytest.approx(0.02)
    ids = [f"x{i}" for i in range(4000)]

    def members(p=policy):
        return {c for c in ids if campaign_conf.in_exploration(p.holdout_salt, "cpc_daily", c, 0.05, p.exploration)}

    first = members()
    assert first == members() and first == {c for c in ids if in_exploration(conf, c)}
    assert 0.012 <= len(first) / len(ids) <= 0.028, len(first)
    assert {campaign_conf.holdout_bucket(policy.holdout_salt, "cpc_daily", c) for c in first} <= set(range(500, 700))
    assert not first & {c for c in ids if in_holdout(conf, c)}, "never in the holdout"
    assert not members(dataclasses.replace(policy, exploration=0.0))
    assert campaign_conf.bucket_limit(0.05 + 0.02) == 700 and campaign_conf.bucket_limit(0.1 + 0.02) == 1200


def test_exploration_share_is_checked_naming_the_file_and_field(conf):
    """Spark-free: exploration is a share in [0, 0.5), 0 when absent; an offer campaign's holdout and the share must
    stay below 1 together (the campaign's file named); the policy carries conf/models.yaml's harm margin."""
    from jobs.platform.config import business
    from models import uplift as uplift_model

    raw = dict(business("policy"))
    assert campaign_conf.load_policy({k: v for k, v in raw.items() if k != "exploration"}).exploration == 0.0
    for bad in (0.5, -0.01, "some"):
        with pytest.raises(ConfigError, match=r"^conf/policy\.yaml: exploration: "):
            campaign_conf.load_policy({**raw, "exploration": bad})
    daily = next(c for c in conf["camps"] if c.id == "cpc_daily")
    cpc.check_exploration(conf["camps"], conf["policy"])
    greedy = dataclasses.replace(daily, holdout=0.9)
    with pytest.raises(ConfigError, match=r"^conf/campaigns/cpc_daily\.yaml: holdout: 0.9 and the exploration share 0.1 "):
        cpc.check_exploration([greedy], dataclasses.replace(conf["policy"], exploration=0.1))
    cpc.check_exploration([dataclasses.replace(greedy, kind="message")], dataclasses.replace(conf["policy"], exploration=0.1))
    assert conf["policy"].harm_margin == uplift_model.load_settings().harm_margin
    # issue 22 review: the exploration priority's share of each channel's capacity, in [0, 1], 0.10 when absent
    assert conf["policy"].exploration_capacity_share == pytest.approx(0.10)
    assert campaign_conf.load_policy({k: v for k, v in raw.items() if k != "exploration_capacity_share"}).exploration_capacity_share == 0.10
    for bad in (1.5, -0.1, "most"):
        with pytest.raises(ConfigError, match=r"^conf/policy\.yaml: exploration_capacity_share: "):
            campaign_conf.load_policy({**raw, "exploration_capacity_share": bad})


def test_exploration_in_spark_matches_python(spark, conf):
    """decide.in_exploration (Spark) equals campaigns.in_exploration (Python) for two campaigns and holdout shares."""
    policy = conf["policy"]
    ids = [f"x{i}" for i in range(400)]
    shares = {"cpc_daily": 0.05, "vas_growth": 0.10}
    df = spark.createDataFrame([(c, camp, h) for c in ids for camp, h in shares.items()],
                               "customer_id string, campaign_id string, holdout_share double")
    got = {(r["customer_id"], r["campaign_id"]): r["e"] for r in df.select("customer_id", "campaign_id", cpc.in_exploration(policy).alias("e")).collect()}
    want = {(c, camp): campaign_conf.in_exploration(policy.holdout_salt, camp, c, h, policy.exploration) for c in ids for camp, h in shares.items()}
    assert got == want and any(want.values())


def test_exploration_members_skip_the_value_rules_but_not_the_policy(spark, tagged, conf):
    """Issue 22: a member of cpc_daily's exploration bucket with the exploration priority (here the whole capacity
    of 1 a channel may go to it: exploration_capacity_share 1) is contacted whatever the ranking says, on one
    candidate: its best explorer candidate skips the value rules and takes the contact, recorded with explored and
    reasons starting 'exploration; '; its other candidates compete like everyone's (the value rules remove what they
    remove for its twin outside the bucket). Opt-outs and the weekly cap still stop members: no contact. A
    global-holdout member in the bucket is held out, not explored: its records carry no exploration flag or reason."""
    from jobs.stages.cpc.decide import decisions

    who = {k: v["customer_id"] for k, v in exploration_rows(conf).items()}
    extra = ("customer_id string, recent_total int, recent_by_channel map<string,int>",
             [(who["capped"], 2, {"sms_push": 1, "wechat": 1})])
    policy = dataclasses.replace(conf["policy"], exploration_capacity_share=1.0)
    frame = decided_frame(spark, tagged, conf, list(who.values()), extra, policy=policy).localCheckpoint()
    got = [r.asDict() for r in frame.collect()]

    def rows(key, **match):
        return [r for r in got if r["customer_id"] == who[key] and all(r[k] == v for k, v in match.items())]

    lost = {(r["product_id"], r["channel"]) for r in rows("twin", campaign_id="cpc_daily", channel_kind="active") if r["outcome"] == "no_value"}
    assert lost, "the twin loses some active candidates to no_value"
    mine = {(r["product_id"], r["channel"]): r for r in rows("plain", campaign_id="cpc_daily")}
    assert all(r["explored"] and r["explore"] == (r["channel_kind"] == "active") for r in mine.values())
    first = [r for r in mine.values() if r["explore_priority"]]
    assert len(first) == 1 and first[0]["outcome"] == "contact", "one candidate with the priority, contacted"
    assert all(mine[k]["outcome"] == "no_value" for k in lost if not mine[k]["explore_priority"]), "the others as the twin's"
    assert not any(r["explored"] for r in rows("twin", campaign_id="cpc_daily"))
    assert {r["outcome"] for r in rows("opted")} == {"opt_out"}
    capped = {r["outcome"] for r in rows("capped", channel_kind="active")}
    assert "frequency_cap" in capped and "contact" not in capped
    held = rows("held", campaign_id="cpc_daily")
    assert "global_holdout" in {r["outcome"] for r in held} and not any(r["explored"] or r["explore"] for r in held)
    written = [r.asDict() for r in decisions(frame, "run").collect()]
    recorded = [r for r in written if r["customer_id"] == who["plain"] and r["outcome"] == "contact"]
    assert recorded and recorded[0]["explored"] and recorded[0]["reasons"].startswith("exploration; campaign ")
    globally = [r for r in written if r["customer_id"] == who["held"]]
    assert globally and {r["outcome"] for r in globally} == {"global_holdout"}
    assert not any(r["explored"] or r["reasons"].startswith("exploration") for r in globally)


def test_explorers_beyond_the_capacity_share_compete_like_everyone_else(spark, tagged, conf):
    """Issue 22 review: with the shipped exploration_capacity_share (0.10 of a capacity of 1 a channel: no place), a
    member of cpc_daily's exploration bucket gets no priority: the value rules remove exactly what they remove for
    its twin outside the bucket (same inputs), its records say explored but no reason starts 'exploration;'."""
    from jobs.stages.cpc.decide import decisions

    who = {k: v["customer_id"] for k, v in exploration_rows(conf).items()}
    frame = decided_frame(spark, tagged, conf, [who["plain"], who["twin"]]).localCheckpoint()
    got = [r.asDict() for r in frame.collect()]

    def value_outcomes(key):
        return {(r["campaign_id"], r["product_id"], r["channel"]): r["outcome"] for r in got
                if r["customer_id"] == who[key] and r["campaign_id"] == "cpc_daily" and r["outcome"] in ("harmed", "no_value")}

    assert value_outcomes("plain") == value_outcomes("twin") and value_outcomes("plain")
    assert not any(r["explore_priority"] for r in got)
    mine = [r for r in decisions(frame, "run").collect() if r["customer_id"] == who["plain"] and r["campaign_id"] == "cpc_daily"]
    assert mine and all(r["explored"] and not r["reasons"].startswith("exploration") for r in mine)


def test_active_eligible_by_hand():
    """Spark-free (issue 22 review): a (customer, campaign) is active-eligible when one of its active candidates
    passed the eligibility rules (1-11), whatever came after (a holdout, a value rule, capacity, a contact); passive
    candidates do not count, and an active one removed by rule 1-11 does not either."""
    def cand(customer, campaign, kind, outcome):
        return {"customer_id": customer, "campaign_id": campaign, "channel_kind": kind, "outcome": outcome}

    rows = [cand("a", "c", "active", "frequency_cap"), cand("a", "c", "passive", "holdout"),  # held out through a placement only
            cand("b", "c", "active", "holdout"), cand("d", "c", "active", "no_value"), cand("e", "c", "active", "capacity"),
            cand("f", "c", "active", "recently_contacted"), cand("f", "c", "passive", "placement"), cand("g", "c", "active", "global_holdout"),
            cand("h", "c", "active", "opt_out"), cand("h", "x", "active", "contact")]
    assert campaign_conf.active_eligible(rows) == {("b", "c"), ("d", "c"), ("e", "c"), ("g", "c"), ("h", "x")}
    assert campaign_conf.ELIGIBILITY == cpc.RULES[: cpc.RULES.index("global_holdout")] and len(campaign_conf.ELIGIBILITY) == 11


def test_active_eligible_is_recorded_on_holdout_and_exploration_rows_alike(spark, tagged, conf):
    """Issue 22 review: gold.cpc_decisions' active_eligible, on every row of a (customer, campaign): a holdout member
    and an explorer whose cpc_daily active candidates the repeat interval removed carry false (the holdout row
    through their passive candidates, the explorer's placements or not-chosen row), their twins without that
    history true; the Spark twin equals the Python one on every row."""
    from jobs.stages.cpc.decide import decisions

    who = {k: v["customer_id"] for k, v in eligibility_rows(conf).items()}
    extra = ("customer_id string, recent_by_campaign map<string,int>",
             [(who["held_blocked"], {"cpc_daily": 2}), (who["explorer_blocked"], {"cpc_daily": 2})])
    frame = decided_frame(spark, tagged, conf, list(who.values()), extra).localCheckpoint()
    want = campaign_conf.active_eligible([r.asDict() for r in frame.collect()])
    written = [r.asDict() for r in decisions(frame, "run").collect()]
    assert written and all(r["active_eligible"] == ((r["customer_id"], r["campaign_id"]) in want) for r in written)
    daily = {r["customer_id"]: r for r in written if r["campaign_id"] == "cpc_daily"}
    assert {daily[who[k]]["outcome"] for k in ("held_blocked", "held_open")} == {"holdout"}
    assert daily[who["held_open"]]["active_eligible"] and not daily[who["held_blocked"]]["active_eligible"]
    blocked = [r for r in written if r["customer_id"] == who["explorer_blocked"] and r["campaign_id"] == "cpc_daily"]
    assert blocked and all(r["explored"] and not r["active_eligible"] and r["outcome"] != "contact" for r in blocked)
    assert daily[who["explorer_open"]]["explored"] and daily[who["explorer_open"]]["active_eligible"]


def test_harmed_rule_and_the_uplift_fit_source(spark, tagged, conf):
    """Issue 22: with an uplift score for the family (gold.uplift's tau), a candidate an active contact would
    harm (tau < -harm_margin) is removed by harmed, after the holdouts; a helped one's expected value is
    tau x value - cost and its fit_source says 'uplift <family> tau 0.200'; passive candidates and customers
    without a score keep their fits. With a margin above the harm, harmed lets it through (no_value takes it)."""
    who = {k: v["customer_id"] for k, v in uplift_rows(conf).items()}
    cats = sorted({p.category for p in conf["products"]})
    extra = ("customer_id string, uplift_tau map<string,double>",
             [(who["hurt"], dict.fromkeys(cats, -0.05)), (who["helped"], dict.fromkeys(cats, 0.2))])
    got = decide(spark, tagged, conf, list(who.values()), extra)
    removed = set(cpc.RULES[: cpc.RULES.index("harmed")])  # the eligibility rules and both holdouts

    def offers(key, kind="active"):
        """cpc_daily's candidates (the customers are outside its holdouts and exploration) past its holdouts."""
        return [r for r in got if r["customer_id"] == who[key] and r["campaign_id"] == "cpc_daily" and r["channel_kind"] == kind
                and r["outcome"] not in removed]

    hurt = offers("hurt")
    assert hurt and {r["outcome"] for r in hurt} == {"harmed"}
    assert all(r["tau"] == pytest.approx(-0.05) and r["fit_source"] == f"uplift {r['category']} tau -0.050" for r in hurt)
    assert "harmed" not in {r["outcome"] for r in offers("hurt", "passive")} and all(r["tau"] is None for r in offers("hurt", "passive"))
    helped = offers("helped")
    assert helped and "harmed" not in {r["outcome"] for r in helped}
    for r in helped:
        assert r["fit_source"] == f"uplift {r['category']} tau 0.200"
        assert r["expected_value"] == pytest.approx(0.2 * r["value"] - r["cost"], abs=1e-4)
    plain = [r for r in got if r["customer_id"] == who["plain"]]
    assert plain and all(r["tau"] is None and not r["fit_source"].startswith("uplift") for r in plain)
    assert "harmed" not in {r["outcome"] for r in plain}
    lenient = dataclasses.replace(conf["policy"], harm_margin=0.1)
    again = decide(spark, tagged, conf, [who["hurt"]], (extra[0], extra[1][:1]), policy=lenient)
    assert "harmed" not in {r["outcome"] for r in again} and "no_value" in {r["outcome"] for r in again}


def test_the_closure_guard_stops_the_active_contacts_of_an_offer_that_closes_lines(spark, tagged, conf):
    """Issue 22: an offer (campaign, product) the evaluation found to close lines (inputs.closure_harm, passed as
    combos' closure_harm) loses its active candidates to rule harmed, with the guard's text at the end of their
    fit_source; its passive candidates and every other offer are as before. With closure_guard false the rule
    does not fire."""
    cid = uplift_rows(conf)["plain"]["customer_id"]
    removed = set(cpc.RULES[: cpc.RULES.index("harmed")])
    before = {(r["campaign_id"], r["product_id"], r["channel"]): r for r in decide(spark, tagged, conf, [cid])}
    live = sorted({(c, p) for (c, p, _), r in before.items() if c == "cpc_daily" and r["channel_kind"] == "active"
                   and r["outcome"] not in removed and r["outcome"] != "harmed"})
    assert live, "an active offer of cpc_daily that reaches the value rules"
    pair, note = live[0], "closure guard: contacts closed +1.00 pp more lines than the holdout (...)"
    after = {(r["campaign_id"], r["product_id"], r["channel"]): r for r in decide(spark, tagged, conf, [cid], harm={pair: note})}
    assert before.keys() == after.keys()
    guarded = [k for k in after if k[:2] == pair and after[k]["channel_kind"] == "active"]
    assert guarded
    for k, r in after.items():
        if k in guarded and before[k]["outcome"] not in removed:
            assert r["outcome"] == "harmed" and r["fit_source"] == f"{before[k]['fit_source']}; {note}", k
        elif k not in guarded:
            assert (r["outcome"], r["fit_source"]) == (before[k]["outcome"], before[k]["fit_source"]), k
    off = dataclasses.replace(conf["policy"], closure_guard=False)
    again = decide(spark, tagged, conf, [cid], policy=off, harm={pair: note})
    assert {(r["campaign_id"], r["product_id"], r["channel"]): r["outcome"] for r in again} == \
        {k: r["outcome"] for k, r in before.items()}


def test_the_closure_guard_reads_the_latest_evaluation_before_the_day(spark, tmp_path, conf):
    """inputs.closure_harm: the campaign x product cells of gold.campaign_eval's latest evaluation before the day
    whose closure_effect interval is above zero, for offer campaigns, in cells with enough held-out and matured
    decisions (closure_guard_min_holdout 500, closure_guard_min_matured_share 0.5 shipped); nothing without the
    table, or from a table written before closures were measured."""
    from jobs.platform import lake
    from jobs.platform.config import Paths, business
    from jobs.stages.cpc.inputs import closure_harm

    paths, policy = Paths(tmp_path), conf["policy"]
    assert (policy.closure_guard, policy.closure_guard_min_holdout, policy.closure_guard_min_matured_share) == (True, 500, 0.5)
    raw = dict(business("policy"))
    for key, bad in (("closure_guard_min_holdout", 0), ("closure_guard_min_matured_share", 1.5), ("closure_guard", "often")):
        with pytest.raises(ConfigError, match=rf"^conf/policy\.yaml: {key}: "):
            campaign_conf.load_policy({**raw, key: bad})
    day = SNAPSHOT
    assert closure_harm(spark, paths, day, conf["camps"], policy) == {}
    cols = ("eval_date date, level string, campaign_id string, product_id string, treated long, holdout long, "
            "matured_share double, closure_effect double, closure_effect_low double, closure_effect_high double")
    older, last = day - dt.timedelta(days=2), day - dt.timedelta(days=1)
    rows = [(older, "campaign,product", "cpc_daily", "P_OLD", 900, 600, 1.0, 0.05, 0.01, 0.09),  # not the latest evaluation
            (last, "campaign,product", "cpc_daily", "P_HARM", 8000, 600, 0.6, 0.012, 0.004, 0.020),
            (last, "campaign,product", "cpc_daily", "P_SAFE", 8000, 600, 0.6, 0.004, -0.002, 0.010),  # the interval holds zero
            (last, "campaign,product", "cpc_daily", "P_FEW", 8000, 499, 0.6, 0.012, 0.004, 0.020),  # too few held out
            (last, "campaign,product", "cpc_daily", "P_YOUNG", 8000, 600, 0.4, 0.012, 0.004, 0.020),  # too few matured
            (last, "campaign,product", "cpc_daily", "P_NONE", 0, 0, None, None, None, None),
            (last, "campaign", "cpc_daily", "*", 16000, 1200, 0.6, 0.008, 0.003, 0.013),  # another level
            (last, "campaign,product", "not_an_offer", "P_HARM", 8000, 600, 0.6, 0.012, 0.004, 0.020),
            (day, "campaign,product", "cpc_daily", "P_TODAY", 8000, 600, 0.6, 0.05, 0.01, 0.09)]  # the day itself: not before
    lake.replace(spark.createDataFrame(rows, cols), paths, "gold.campaign_eval", None)
    got = closure_harm(spark, paths, day, conf["camps"], policy)
    assert list(got) == [("cpc_daily", "P_HARM")]
    assert got[("cpc_daily", "P_HARM")] == ("closure guard: contacts closed +1.20 pp more lines than the holdout (95% CI +0.40 "
                                            f"to +2.00 pp, 8,000 treated, 600 held out; evaluation of {last.isoformat()})")
    assert closure_harm(spark, paths, day, [c for c in conf["camps"] if c.kind != "offer"], policy) == {}, "no offer campaign"
    lenient = dataclasses.replace(policy, closure_guard_min_holdout=1, closure_guard_min_matured_share=0.0)
    assert set(closure_harm(spark, paths, day, conf["camps"], lenient)) == {("cpc_daily", p) for p in ("P_HARM", "P_FEW", "P_YOUNG")}
    assert closure_harm(spark, paths, day, conf["camps"], dataclasses.replace(policy, closure_guard=False)) == {}, "the guard off"
    old = tmp_path / "old"
    lake.replace(spark.createDataFrame([(last, "campaign,product", "cpc_daily", "P_X", 5)],
                                       "eval_date date, level string, campaign_id string, product_id string, treated long"),
                 Paths(old), "gold.campaign_eval", None)
    assert closure_harm(spark, Paths(old), day, conf["camps"], policy) == {}


def test_a_cold_start_family_says_so_in_the_fit_source(spark, tagged, conf):
    """Issue 22: for a family whose latest uplift training was a cold start (the registry's reason, passed as
    combos' uplift_notes), an active offer's fit_source reads 'cold start: propensity (<reason>); <as before>';
    its passive candidates and the other families read as before, and nothing else changes."""
    cid = uplift_rows(conf)["plain"]["customer_id"]
    note = "cold start: propensity (n treated 40 < 500)"
    before = {(r["campaign_id"], r["product_id"], r["channel"]): r for r in decide(spark, tagged, conf, [cid])}
    after = {(r["campaign_id"], r["product_id"], r["channel"]): r for r in decide(spark, tagged, conf, [cid], notes={"vas": note})}
    assert before.keys() == after.keys()
    noted = [k for k, r in after.items() if r["category"] == "vas" and r["campaign_kind"] == "offer" and r["channel_kind"] == "active"]
    assert noted
    for k, r in after.items():
        if k in noted:
            assert r["fit_source"] == f"{note}; {before[k]['fit_source']}"
        else:
            assert r["fit_source"] == before[k]["fit_source"], k
        assert (r["outcome"], r["expected_value"]) == (before[k]["outcome"], before[k]["expected_value"]), k


def test_with_a_model_for_one_family_the_others_rank_by_propensity_x_incrementality(spark, tagged, conf):
    """Issue 22 review: once a family (data) has an uplift model, tau x value and the propensity acceptance x value
    must be on one scale: the other families' active offers take acceptance x the incrementality factor (the
    assumed 0.30 here: inputs.cold_start_ranking) and say so in fit_source ('cold start: propensity x 0.30
    (assumed) (never trained); <as before>'); the modelled family's offers rank by tau; passive candidates and
    messages are as before."""
    from jobs.stages.cpc.inputs import cold_start_ranking

    cid = uplift_rows(conf)["plain"]["customer_id"]
    families = campaign_conf.offer_families(conf["products"], conf["camps"])
    notes, factors = cold_start_ranking(families, {"data": "uplift: x_learner (n treated 900, control 2000)"}, {}, 0.3)
    extra = ("customer_id string, uplift_tau map<string,double>", [(cid, {"data": 0.2})])
    before = {(r["campaign_id"], r["product_id"], r["channel"]): r for r in decide(spark, tagged, conf, [cid])}
    after = {(r["campaign_id"], r["product_id"], r["channel"]): r
             for r in decide(spark, tagged, conf, [cid], extra, notes=notes, factors=factors)}
    assert before.keys() == after.keys()
    scaled = 0
    for k, r in after.items():
        was = before[k]
        if r["campaign_kind"] == "offer" and r["channel_kind"] == "active" and r["category"] == "data":
            assert r["fit_source"] == "uplift data tau 0.200" and r["expected_value"] == pytest.approx(0.2 * r["value"] - r["cost"], abs=1e-4)
        elif r["campaign_kind"] == "offer" and r["channel_kind"] == "active":
            assert r["fit_source"] == f"cold start: propensity x 0.30 (assumed) (never trained); {was['fit_source']}", k
            assert r["expected_value"] == pytest.approx(0.3 * (was["expected_value"] + r["cost"]) - r["cost"], abs=2e-4), k
            scaled += 1
        else:
            assert (r["fit_source"], r["expected_value"]) == (was["fit_source"], was["expected_value"]), k
    assert scaled


def test_without_a_model_and_without_exploration_the_cold_start_reasons_change_no_decision(spark, tagged, conf, people):
    """Issue 22 review: while no family has a model nothing is scaled (cold_start_ranking gives no factor) and, with
    exploration 0, nobody is explored: on every hand-written customer of the rule tests, the same outcomes and
    expected values with the cold-start reasons as without them (the decision as before issue 22's models), and
    every active offer of an offer family says 'cold start: propensity (never trained); ' first."""
    from jobs.stages.cpc.inputs import cold_start_ranking

    families = campaign_conf.offer_families(conf["products"], conf["camps"])
    notes, factors = cold_start_ranking(families, {}, {"data": {"factor": 0.5}}, 0.3)
    assert factors == {}
    rows, extra = rows_of(people)
    ids, policy = [r["customer_id"] for r in rows], dataclasses.replace(conf["policy"], exploration=0.0)
    plain = {(r["customer_id"], r["campaign_id"], r["product_id"], r["channel"]): r for r in decide(spark, tagged, conf, ids, extra, policy=policy)}
    noted = decide(spark, tagged, conf, ids, extra, policy=policy, notes=notes, factors=factors)
    assert len(noted) == len(plain)
    for r in noted:
        was = plain[(r["customer_id"], r["campaign_id"], r["product_id"], r["channel"])]
        assert (r["outcome"], r["expected_value"], r["explored"], r["explore_priority"]) == (was["outcome"], was["expected_value"], False, False)
        if r["campaign_kind"] == "offer" and r["channel_kind"] == "active" and r["category"] in families:
            assert r["fit_source"] == f"cold start: propensity (never trained); {was['fit_source']}"


def _first_choice(candidates):
    """Python's reading of assign.candidate_order: urgent first, then the highest expected value; ties: lower
    cost, campaign priority, ids."""
    return min(candidates, key=lambda r: (not r["urgent"], -r["expected_value"], r["cost"], r["priority"], r["campaign_id"],
                                          r["product_id"], r["channel"]))


def test_every_eligible_customer_and_campaign_is_treated_or_not_chosen_once(day_frame, day):
    """gold.cpc_decisions (decide.decisions) records every (customer, campaign) with a candidate past both
    holdouts (a step of SELECTION: harmed, no_value, passive_first, one_offer_a_day, capacity, placement, contact;
    the holdouts are drawn before the value rules) either as treated (its contacts and placements) or once as
    not_chosen, never both: one row, its best candidate (ranked as the held out are). A held-out (customer,
    campaign) is never not_chosen. The module's customers compete for channels of capacity 1 and one contact a
    day, so some are not chosen."""
    from jobs.stages.cpc.decide import CHOSEN, HELD_OUT, NOT_CHOSEN, SELECTION, decisions

    cands = day
    got = [r.asDict() for r in decisions(day_frame, "run").collect()]
    assert SELECTION == ("harmed", "no_value", "passive_first", "one_offer_a_day", "capacity", "placement", "contact")
    past = {(r["customer_id"], r["campaign_id"]) for r in cands if r["outcome"] in SELECTION}
    held = {(r["customer_id"], r["campaign_id"]) for r in cands if r["outcome"] in HELD_OUT}
    treated = {(r["customer_id"], r["campaign_id"]) for r in got if r["outcome"] in CHOSEN}
    lost = [r for r in got if r["outcome"] == NOT_CHOSEN]
    lost_pairs = [(r["customer_id"], r["campaign_id"]) for r in lost]
    assert treated and lost, "the case has both"
    assert len(lost_pairs) == len(set(lost_pairs)), "once per customer and campaign"
    assert not set(lost_pairs) & treated, "never both treated and not chosen"
    assert set(lost_pairs) | treated == past, "every eligible (customer, campaign) is recorded"
    assert not past & held and not set(lost_pairs) & held
    for r in lost:
        pair = [c for c in cands if (c["customer_id"], c["campaign_id"]) == (r["customer_id"], r["campaign_id"])
                and c["outcome"] in SELECTION]
        assert {c["outcome"] for c in pair} <= {"harmed", "no_value", "one_offer_a_day", "capacity"}, "lost to value, one-a-day or capacity"
        best = _first_choice(pair)
        assert (r["product_id"], r["channel"]) == (best["product_id"], best["channel"]), r["customer_id"]
    refs = [r["contact_ref"] for r in got]
    assert len(refs) == len(set(refs)), "a not_chosen row has a key of its own"


def test_not_chosen_rows_never_reach_an_export_list(spark, tmp_path):
    """The lists take contacts and placements only: export.decided_counts (what each list must hold, from
    gold.cpc_decisions) and export.select_list (a list's rows) leave not_chosen and held-out rows out, even
    the most valuable ones."""
    from jobs.platform import lake
    from jobs.platform.config import Paths
    from jobs.stages import export

    paths = Paths(tmp_path)
    rows = [("A", "sms_push", "contact", 1.0), ("B", "sms_push", "not_chosen", 9.0), ("C", "app", "placement", 1.0),
            ("D", "app", "not_chosen", 9.0), ("E", "sms_push", "holdout", 9.0), ("F", "wechat", "not_chosen", 9.0),
            ("G", "outbound_call", "global_holdout", 9.0)]
    df = spark.createDataFrame([(SNAPSHOT, *r) for r in rows],
                               "snapshot_date date, customer_id string, channel string, outcome string, expected_value double")
    lake.replace(df, paths, "gold.cpc_decisions", None)
    version = lake.version(spark, paths, "gold.cpc_decisions")
    assert export.decided_counts(spark, paths, SNAPSHOT, version) == {"sms_push": 1, "placements": 1}
    listed = {ch["id"]: {r["customer_id"] for r in export.select_list(df, ch).collect()} for ch in export.list_channels()}
    assert listed["sms_push"] == {"A"} and listed["placements"] == {"C"}
    assert set().union(*listed.values()) == {"A", "C"}


def test_passive_first_for_a_customer_who_will_come_to_us(day, people):
    assert "passive_first" in seen(day, people, "frequent")
    assert "passive_first" not in seen(day, people, "never")
    placed = {(r["campaign_id"], r["product_id"]) for r in mine(day, people, "frequent") if r["outcome"] == "placement"}
    pushed_instead = {(r["campaign_id"], r["product_id"]) for r in mine(day, people, "frequent") if r["outcome"] == "passive_first"}
    assert pushed_instead and pushed_instead <= placed, "only an offer actually placed keeps it from being pushed"


def test_one_active_contact_a_day_and_one_placement_per_touchpoint(day, people):
    got = [r for p in "pqrs" for r in mine(day, people, f"one_{p}")]
    for p in "pqrs":
        rows = mine(day, people, f"one_{p}")
        assert sum(g["outcome"] == "contact" for g in rows) <= 1
        placed = [g["channel"] for g in rows if g["outcome"] == "placement"]
        assert len(placed) == len(set(placed))
    assert any(g["outcome"] == "one_offer_a_day" for g in got)


def _assign(spark, rows, capacity):
    df = spark.createDataFrame([(c, "camp", "P", r[1], len(r) > 3 and r[3], r[2], 0.01, 1) for r in rows for c in [r[0]]],
                               "customer_id string, campaign_id string, product_id string, channel string, urgent boolean, "
                               "expected_value double, cost double, priority int")
    return {(r["customer_id"], r["channel"]) for r in cpc.assign(df, capacity, 30, log=lambda *_: None).collect()}


def test_assignment_under_capacity_known_answer(spark):
    """Five customers, two channels; SMS takes 2, WeChat 1. Round 1: A, B, C, E propose SMS, D WeChat; SMS keeps
    A (9) and B (8), refuses C and E. Round 2: C proposes WeChat (3) but D (5) holds it: refused. E has nothing
    else. With room for two on WeChat, C gets it."""
    rows = [("A", "sms", 9.0), ("A", "wechat", 1.0), ("B", "sms", 8.0), ("C", "sms", 7.0), ("C", "wechat", 3.0),
            ("D", "wechat", 5.0), ("E", "sms", 6.0)]
    assert _assign(spark, rows, {"sms": 2, "wechat": 1}) == {("A", "sms"), ("B", "sms"), ("D", "wechat")}
    assert _assign(spark, rows, {"sms": 2, "wechat": 2}) == {("A", "sms"), ("B", "sms"), ("D", "wechat"), ("C", "wechat")}


def test_assignment_is_not_first_come_first_served(spark):
    """SMS (room 2) is filled in round 1 by two low-value customers; X, refused by the call channel (room 1) in
    favour of Y, arrives at SMS in round 2 with a higher value and takes the place of one of them (L2; ties by
    customer id). A channel that kept whoever came first would have left X out."""
    rows = [("L1", "sms", 0.1), ("L2", "sms", 0.1), ("X", "call", 10.0), ("X", "sms", 5.0), ("Y", "call", 12.0)]
    assert _assign(spark, rows, {"sms": 2, "call": 1}) == {("Y", "call"), ("X", "sms"), ("L1", "sms")}


def test_urgent_service_messages_go_first(spark):
    """U's trial reminder (urgent, value 1) takes the one SMS place from V's offer (value 9); W's own urgent
    message beats W's bigger offer on another channel."""
    rows = [("U", "sms", 1.0, True), ("V", "sms", 9.0), ("W", "wechat", 0.5, True), ("W", "email", 50.0)]
    assert _assign(spark, rows, {"sms": 1, "wechat": 5, "email": 5}) == {("U", "sms"), ("W", "wechat")}


def test_capacity_is_never_exceeded_in_the_decision(spark, tagged, conf):
    small = [dataclasses.replace(c, capacity=1) if c.kind == "active" else c for c in conf["channels"]]
    got = decide(spark, tagged, conf, [r["customer_id"] for r in capacity_rows(conf)], channels=small)
    contacts = [r["channel"] for r in got if r["outcome"] == "contact"]
    assert contacts and all(contacts.count(ch) <= 1 for ch in set(contacts))
    assert "capacity" in {r["outcome"] for r in got}


def test_trial_campaigns_follow_the_trial_day(day, people):
    got = mine(day, people, "trial")
    fb = [r for r in got if r["campaign_id"] == "trial_feedback"]
    assert fb and {r["product_id"] for r in fb} == {"P_MUSIC"} and {r["channel"] for r in fb} == {"sms_push"}
    assert not [r for r in got if r["campaign_id"].startswith("trial_expiry")]


def test_campaign_configuration_errors_name_the_file(tmp_path, cat, conf):
    ids = [p.id for p in conf["products"]]
    chans = [c.id for c in conf["channels"]]
    good = {"id": "x", "target": "true", "products": ["P_NEWS"], "channels": ["sms_push"], "start": "2026-01-01", "holdout": 0.1}
    assert campaign_conf.parse(good, "x.yaml", ids, chans, set(cat.ids)).products == ("P_NEWS",)
    for bad, msg in [({"products": ["P_NOPE"]}, "unknown product"), ({"channels": ["fax"]}, "unknown channel"),
                     ({"target": "no_such_tag > 1"}, "no_such_tag"), ({"holdout": 1.5}, "holdout"),
                     ({"kind": "message"}, "needs a value"), ({"end": "2025-01-01"}, "before start")]:
        with pytest.raises(ConfigError, match=msg) as exc:
            campaign_conf.parse({**good, **bad}, "conf/campaigns/x.yaml", ids, chans, set(cat.ids))
        assert "conf/campaigns/x.yaml" in str(exc.value)
    (tmp_path / "campaigns").mkdir()
    for name in ("a", "b"):
        (tmp_path / "campaigns" / f"{name}.yaml").write_text("id: same\ntarget: 'true'\nproducts: all\nchannels: all\nstart: 2026-01-01\nholdout: 0\n")
    with pytest.raises(ConfigError, match="already used"):
        campaign_conf.load(ids, chans, set(cat.ids), folder=tmp_path / "campaigns")


def test_shipped_campaigns_cover_the_brief_scenarios(conf):
    ids = {c.id for c in conf["camps"]}
    assert {"new_customer_guide", "new_customer_offer", "contract_renewal", "handset_upgrade", "data_cap_alert",
            "vas_growth", "trial_feedback", "trial_low_usage", "trial_expiry_sms", "trial_expiry_call"} <= ids
    assert all(0 < c.holdout < 1 for c in conf["camps"])


def test_product_channel_fit_uses_history_and_weights(conf):
    products = [p for p in conf["products"] if p.id == "P_GAMES"]
    channels, categories = conf["channels"], conf["categories"]
    prior = {r["channel"]: r for r in fits.product_channel_fits(products, channels, categories, {}, {})}
    hist = {r["channel"]: r for r in fits.product_channel_fits(products, channels, categories, {("P_GAMES", "app"): 50, ("P_GAMES", "wap"): 5},
                                                                 {"app": 1000, "wap": 1000})}
    assert set(prior) == set(categories["games"])
    assert not prior["app"]["success_from_history"] and prior["app"]["success"] == categories["games"]["app"]
    assert hist["app"]["success"] == 1.0 and hist["wap"]["success"] == pytest.approx(0.1)
    assert hist["app"]["fit"] > prior["app"]["fit"] and hist["wap"]["fit"] < prior["wap"]["fit"]


def test_history_counts_past_contacts_only_and_declines_within_the_cooldown(spark, conf, tmp_path):
    """The policy's inputs from history: active contacts of the previous days within the frequency window
    (today's own decisions and placements not counted), days since each campaign last contacted, days since
    the last declined outbound offer."""
    from jobs.platform import lake
    from jobs.platform.config import Paths

    paths, day = Paths(tmp_path), SNAPSHOT
    decisions = [("A", "cpc_daily", "sms_push", "contact", 1), ("A", "cpc_daily", "sms_push", "contact", 6),
                 ("A", "cpc_daily", "wechat", "contact", 7), ("A", "new_customer_guide", "email", "contact", 30),
                 ("A", "cpc_daily", "app", "placement", 1), ("A", "cpc_daily", "email", "contact", 0)]
    lake.replace(spark.createDataFrame([(day - D(days=ago), c, camp, ch, o) for c, camp, ch, o, ago in decisions],
                                       "snapshot_date date, customer_id string, campaign_id string, channel string, outcome string"),
                 paths, "gold.cpc_decisions", None)
    cooldown = conf["policy"].cooldown_days
    contacts = [("B", "out", "marketing", False, 3), ("B", "out", "marketing", False, 9), ("C", "out", "marketing", False, cooldown + 1),
                ("D", "in", "marketing", False, 1), ("E", "out", "marketing", True, 1)]
    lake.replace(spark.createDataFrame(
        [(day - D(days=ago), c, dt.datetime.combine(day - D(days=ago), dt.time(10)), d, p, r) for c, d, p, r, ago in contacts],
        "delivery_date date, customer_id string, contact_ts timestamp, direction string, purpose string, resolved boolean"),
        paths, "bronze.contacts", None)
    got = {r["customer_id"]: r.asDict() for r in cpc.history(spark, paths, day, conf["policy"], conf["camps"]).collect()}
    assert got["A"]["recent_total"] == 2 and got["A"]["recent_by_channel"] == {"sms_push": 2}
    assert got["A"]["recent_by_campaign"] == {"cpc_daily": 1, "new_customer_guide": 30}
    assert got["B"]["days_since_decline"] == 3
    assert "C" not in got and "D" not in got and "E" not in got


def test_trials_open_trial_and_its_day(spark, tmp_path):
    from jobs.platform import lake
    from jobs.platform.config import Paths

    paths, day = Paths(tmp_path), SNAPSHOT
    orders = [("C", "P_MUSIC", "trial_start", 15), ("D", "P_NEWS", "trial_start", 20), ("D", "P_NEWS", "order", 5),
              ("E", "P_READING", "trial_start", 40), ("F", "P_MUSIC", "trial_start", 10), ("F", "P_GAMES", "trial_start", 3),
              ("G", "P_NEWS", "cancel", 9), ("G", "P_NEWS", "trial_start", 4),
              ("H", "P_NEWS", "trial_start", 33), ("H", "P_NEWS", "trial_expire", 3)]
    lake.replace(spark.createDataFrame(
        [(day - D(days=ago), c, dt.datetime.combine(day - D(days=ago), dt.time(9)), p, a) for c, p, a, ago in orders],
        "delivery_date date, customer_id string, order_ts timestamp, product_id string, action string"), paths, "bronze.orders", None)
    rows = cpc.trials(spark, paths, day).collect()
    got = {r["customer_id"]: (r["trial_product_id"], r["trial_day"]) for r in rows if r["trial_product_id"]}
    assert got == {"C": ("P_MUSIC", 15), "F": ("P_GAMES", 3), "G": ("P_NEWS", 4)}
    expired = {r["customer_id"]: (r["days_since_trial_expired"], r["expired_trial_category"]) for r in rows if r["days_since_trial_expired"] is not None}
    assert expired == {"H": (3, "vas")}, "a trial that expired: the win-back campaign's audience"


def test_config_sha256_covers_the_model_settings_the_decision_reads(monkeypatch):
    """Spark-free (issue 22 review): ops.cpc_runs' config_sha256 (campaigns.config_fingerprint) changes with
    conf/models.yaml's harm margin and cold-start incrementality, the settings of that file the decision reads, and
    is stable otherwise; the policy's exploration_capacity_share is in conf/policy.yaml, hashed whole."""
    from models import uplift as uplift_model

    shipped = uplift_model.load_settings()
    base = campaign_conf.config_fingerprint()
    assert base == campaign_conf.config_fingerprint() and len(base) == 64
    assert campaign_conf.decision_model_settings() == {"uplift.harm_margin": shipped.harm_margin,
                                                       "uplift.cold_start_incrementality": shipped.cold_start_incrementality,
                                                       "uplift.rank": shipped.rank}
    for field, value in (("harm_margin", shipped.harm_margin + 0.01), ("cold_start_incrementality", 0.5),
                         ("rank", not shipped.rank)):
        changed = dataclasses.replace(shipped, **{field: value})
        monkeypatch.setattr(uplift_model, "load_settings", lambda raw=None, changed=changed: changed)
        assert campaign_conf.config_fingerprint() != base, field
    monkeypatch.setattr(uplift_model, "load_settings", lambda raw=None: dataclasses.replace(shipped, num_boost_round=7))
    assert campaign_conf.config_fingerprint() == base, "a training setting is not the decision's"


def test_the_uplift_ranking_switch_and_its_override_are_recorded(monkeypatch):
    """Spark-free (issue 22, item 4): conf/models.yaml ``uplift.rank`` (shipped true) and the CPC_UPLIFT_RANK override
    the closed loop's propensity-ranked arm sets; the setting in force enters config_sha256, and the override the
    run id's configuration fingerprint; a wrong value names the override; with ranking off every offer family ranks
    by propensity and says why."""
    from jobs.stages.cpc.inputs import business_fingerprint, ranking_off
    from models import uplift as uplift_model

    monkeypatch.delenv(uplift_model.RANK_ENV, raising=False)
    assert uplift_model.load_settings().rank is True
    base, files = campaign_conf.config_fingerprint(), business_fingerprint()
    monkeypatch.setenv(uplift_model.RANK_ENV, "false")
    assert uplift_model.load_settings().rank is False
    assert campaign_conf.decision_model_settings()["uplift.rank"] is False
    assert campaign_conf.config_fingerprint() != base and business_fingerprint() != files
    monkeypatch.setenv(uplift_model.RANK_ENV, "perhaps")
    with pytest.raises(ConfigError, match=r"conf/models.yaml with CPC_UPLIFT_RANK=perhaps: uplift.rank: Input should be a valid boolean"):
        uplift_model.load_settings()
    monkeypatch.delenv(uplift_model.RANK_ENV)
    assert campaign_conf.config_fingerprint() == base and business_fingerprint() == files
    products, _, _, camps, _ = cpc.load_conf()
    notes, factors = ranking_off(products, camps)
    assert factors == {} and set(notes) == set(campaign_conf.offer_families(products, camps))
    assert all(n == "propensity (uplift ranking off: uplift.rank false)" for n in notes.values())


def test_decision_run_id_comes_from_the_inputs_not_the_clock():
    day = dt.date(2026, 11, 20)
    models = {"churn": "2026-11-19-abc", "data": "none (rule)"}
    first = cpc.decision_run_id(day, "deliveries-sha", "config-sha", models)
    assert first == cpc.decision_run_id(day, "deliveries-sha", "config-sha", dict(reversed(models.items())))
    assert first.startswith("2026-11-20-")
    changed = [cpc.decision_run_id(day, "other", "config-sha", models), cpc.decision_run_id(day, "deliveries-sha", "other", models),
               cpc.decision_run_id(day, "deliveries-sha", "config-sha", {**models, "churn": "2026-11-26-def"}),
               cpc.decision_run_id(day + dt.timedelta(days=1), "deliveries-sha", "config-sha", models)]
    assert first not in changed and len(set(changed)) == len(changed)
    # the offers the closure guard stops are an input too; none leaves the id as it was before the guard
    assert cpc.decision_run_id(day, "deliveries-sha", "config-sha", models, {}) == first
    guarded = {("cpc_daily", "P_X"): "closure guard: ... evaluation of 2026-11-19"}
    again = cpc.decision_run_id(day, "deliveries-sha", "config-sha", models, guarded)
    assert again != first and again == cpc.decision_run_id(day, "deliveries-sha", "config-sha", models, dict(guarded))
    assert again != cpc.decision_run_id(day, "deliveries-sha", "config-sha", models,
                                        {("cpc_daily", "P_X"): "closure guard: ... evaluation of 2026-11-18"})


def test_the_score_summary_is_observed_on_the_rows_written(spark, tmp_path):
    """The stage's summary (rows per outcome, contacts per channel, exploration contacts) comes from an
    ``Observation`` on the rows as gold.cpc_decisions' write writes them, not from a query reading them back: it
    equals the written partition grouped, a channel without contacts is left out, a rerun counts again and an
    empty day counts zeros. When the observed counts do not arrive in time, the partition is read back: the same
    summary."""
    import time

    from pyspark.sql import Observation

    from jobs.platform import lake
    from jobs.platform.config import Paths
    from jobs.stages.cpc import COUNTED, _written, observed, written_counts

    _, channels, _, _, _ = cpc.load_conf()
    active = [c.id for c in channels if c.kind == "active"]
    assert len(active) > 3, "the shipped configuration has channels this day leaves without contacts"
    outcomes = [*COUNTED, "capacity", "no_value"]
    rows = [(SNAPSHOT, f"c{i}", outcomes[i % len(outcomes)], active[i % 3], [True, False, None][i % 3]) for i in range(41)]
    schema = "snapshot_date date, customer_id string, outcome string, channel string, explored boolean"
    paths = Paths(tmp_path)

    def summary_of(frame):
        seen = Observation("written")
        lake.replace(frame.observe(seen, *written_counts(channels)), paths, "gold.cpc_decisions", f"snapshot_date = '{SNAPSHOT}'")
        return _written(observed(seen, spark, paths, SNAPSHOT), SNAPSHOT, 0.0)

    for frame in [spark.createDataFrame(rows, schema)] * 2 + [spark.createDataFrame([], schema)]:
        got = summary_of(frame)
        back = lake.read(spark, paths, "gold.cpc_decisions").where(f"snapshot_date = '{SNAPSHOT}'").collect()
        contacts = [r for r in back if r["outcome"] == "contact"]
        assert got == {"contacts": len(contacts), "placements": sum(r["outcome"] == "placement" for r in back),
                       "holdout": sum(r["outcome"] == "holdout" for r in back),
                       "global_holdout": sum(r["outcome"] == "global_holdout" for r in back),
                       "not_chosen": sum(r["outcome"] == "not_chosen" for r in back),
                       "by_channel": {ch: n for ch in active if (n := sum(r["channel"] == ch for r in contacts))},
                       "explored_contacts": sum(bool(r["explored"]) for r in contacts)}
    assert got["contacts"] == 0 and got["by_channel"] == {}, "an empty day"
    lake.replace(spark.createDataFrame(rows, schema), paths, "gold.cpc_decisions", f"snapshot_date = '{SNAPSHOT}'")

    class Lost:  # counts that never arrive (a dropped listener event)
        @property
        def get(self):
            time.sleep(3)
            raise AssertionError("not waited for")

    late = _written(observed(Lost(), spark, paths, SNAPSHOT, wait_s=0.2), SNAPSHOT, 0.0)
    assert late == summary_of(spark.createDataFrame(rows, schema)) and late["contacts"] == 6 and late["explored_contacts"] == 2
    assert len(late["by_channel"]) == 3 < len(active)
