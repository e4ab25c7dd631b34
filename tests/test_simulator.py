"""The simulator writes what the schemas declare, deterministically, and keeps its truth apart."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib

import pyarrow.parquet as pq

from jobs.config import Paths
from jobs.simulate import SimSpec, generate
from schemas import DELIMITER, FILES

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
