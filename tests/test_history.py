"""The history load's batches (``pipeline.history_batches``): consecutive dates up to a size of landing files, so
that a load of many dates at a million customers does not fill Spark's scratch disk. No Spark; the load in
batches against one batch is in tests/test_operations.py."""

from __future__ import annotations

import datetime as dt

import pytest

from jobs.orchestration import pipeline
from jobs.platform.config import EnvFile, Paths


def test_dates_are_cut_into_consecutive_batches_up_to_the_size_of_their_files(tmp_path):
    paths = Paths(tmp_path)
    days = [dt.date(2026, 11, d) for d in range(1, 7)]
    for day, kib in zip(days, (300, 300, 300, 1500, 100, 100), strict=True):  # the 4th alone is over the limit
        paths.landing_day(day).mkdir(parents=True)
        (paths.landing_day(day) / "usage.csv.gz").write_bytes(b"x" * kib * 1024)
        (paths.landing_day(day) / "usage.ctl").write_bytes(b"")
    got = pipeline.history_batches(paths, list(reversed(days)), 1)  # 1 MB
    assert got == [days[:3], [days[3]], days[4:]], "in date order; a date over the limit is a batch by itself"
    assert pipeline.history_batches(paths, days, 512) == [days], "the sample's history: one batch"
    no_files = dt.date(2026, 11, 9)  # nothing delivered: nothing to weigh
    assert pipeline.history_batches(paths, [*days, no_files], 0.5) == [[d] for d in days[:4]] + [[*days[4:], no_files]]


def test_the_batch_size_is_a_positive_number_of_megabytes():
    assert EnvFile.model_validate({}).storage.history_batch_mb == 512
    with pytest.raises(Exception, match="history_batch_mb"):
        EnvFile.model_validate({"storage": {"history_batch_mb": 0}})
