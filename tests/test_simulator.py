"""The simulator writes what the schemas declare, deterministically, and keeps its truth apart."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib

import pyarrow.parquet as pq

from jobs.platform.config import Paths
from schemas import DELIMITER, FILES
from simulator.generate import SimSpec, generate

SPEC = SimSpec(customers=150, days=3, end_date=dt.date(2026, 11, 20), seed=11)


def _digest(root) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_files(tmp_path):
    a, b = Paths(tmp_path / "a"), Paths(tmp_path / "b")
    generate(a, SPEC, progress=False)
    generate(b, SPEC, progress=False)
    assert _digest(a.landing) == _digest(b.landing)
    c = Paths(tmp_path / "c")
    generate(c, SimSpec(150, 3, SPEC.end_date, seed=12), progress=False)
    assert _digest(a.landing) != _digest(c.landing)


def test_files_match_schemas_and_controls(tmp_path):
    paths = Paths(tmp_path)
    generate(paths, SPEC, progress=False)
    for day in SPEC.dates():
        for kind, schema in FILES.items():
            data = paths.landing_day(day) / schema.file_name(day)
            control = dict(line.split("=", 1) for line in (paths.landing_day(day) / schema.control_name(day)).read_text().splitlines())
            lines = gzip.decompress(data.read_bytes()).decode("utf-8").splitlines()
            assert lines[0].split(DELIMITER) == schema.names, kind
            assert all(len(line.split(DELIMITER)) == len(schema.names) for line in lines[1:]), kind
            assert int(control["rows"]) == len(lines) - 1
            assert control["md5"] == hashlib.md5(data.read_bytes()).hexdigest()


def test_truth_kept_apart_and_complete(tmp_path):
    paths = Paths(tmp_path)
    generate(paths, SPEC, progress=False)
    truth = pq.read_table(paths.truth / "customers.parquet")
    assert truth.num_rows == SPEC.customers
    for col in ("churner", "price_sensitive", "preferred_channel", "affinity_data", "handset_intent"):
        assert col in truth.column_names
    assert not any(p.suffix == ".parquet" for p in paths.landing.rglob("*"))


def _read(paths: Paths, kind: str):
    import pandas as pd

    return pd.concat(pd.read_csv(f, sep=DELIMITER) for f in sorted(paths.landing.glob(f"*/{kind}_*.csv.gz")))


def test_hidden_traits_leave_the_traces_an_operator_sees(tmp_path):
    """What the models can learn from: the data by application category follows the product affinities,
    most churners send the number-portability query, and the device registry dates the current handset."""
    from simulator.generate import APP_AFFINITY

    spec = SimSpec(customers=3000, days=30, end_date=dt.date(2026, 11, 20), seed=3)
    paths = Paths(tmp_path)
    generate(paths, spec, progress=False)
    truth = pq.read_table(paths.truth / "customers.parquet").to_pandas().set_index("customer_id")
    usage = _read(paths, "usage").groupby("customer_id").sum(numeric_only=True)
    for app, category in APP_AFFINITY.items():
        share = usage[app] / usage["data_mb"].clip(lower=1)
        assert (usage[app] <= usage["data_mb"]).all()
        assert share.corr(truth.loc[usage.index, f"affinity_{category}"], method="spearman") > 0.8, app
    contacts = _read(paths, "contacts")
    asked = set(contacts.loc[contacts["purpose"] == "port_out_query", "customer_id"])
    started = truth[truth["churner"] & (truth["churn_start"] >= 2) & (truth["churn_start"] < spec.days - 2)]
    assert len(started) > 20 and len(asked & set(started.index)) >= 0.75 * len(started)
    assert len(asked - set(truth.index[truth["churner"]])) <= 0.002 * spec.customers * spec.days
    devices = _read(paths, "devices")
    first = devices[devices["change_date"] == spec.start_date.isoformat()]
    assert (first["first_seen_date"] < first["change_date"]).mean() > 0.95 and (first["handsets_24m"] >= 1).all()
    later = devices[devices["change_date"] > spec.start_date.isoformat()]
    assert (later["first_seen_date"] == later["change_date"]).all()


def test_the_simulators_channels_are_the_configured_ones():
    from jobs.platform.config import business
    from simulator.generate import INBOUND, OPTOUT_CHANNELS
    from simulator.responder import OUTBOUND

    channels = business("channels")["channels"]
    assert INBOUND == [c["id"] for c in channels if c["kind"] == "passive"]
    assert list(OUTBOUND) == [c["id"] for c in channels if c["kind"] == "active"]
    assert set(OPTOUT_CHANNELS) == {"all", *OUTBOUND}
