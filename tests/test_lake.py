"""``jobs.platform.lake.replace_all``: a stage's independent Delta writes side by side."""

from __future__ import annotations

import pytest

from jobs.platform import lake
from jobs.platform.config import Paths

DAY = "snapshot_date = '2026-11-20'"


def _frame(spark, rows: int, boom: bool = False):
    from pyspark.sql import functions as F

    df = spark.range(rows).selectExpr("CAST(DATE '2026-11-20' AS date) AS snapshot_date", "CAST(id AS string) AS customer_id")
    return df.withColumn("customer_id", F.raise_error(F.lit("boom in the rows")).cast("string")) if boom else df


def _written(spark, paths: Paths, table: str) -> int:
    return lake.read(spark, paths, table).where(DAY).count() if lake.exists(spark, paths, table) else 0


@pytest.mark.parametrize("side_by_side", [True, False])
def test_each_table_gets_its_rows_either_way(spark, tmp_path, monkeypatch, side_by_side):
    monkeypatch.setattr(lake, "SIDE_BY_SIDE", side_by_side)
    paths = Paths(tmp_path)
    lake.replace_all(paths, [lake.Write(_frame(spark, 3), "gold.cpc_offers", DAY, merge_schema=True),
                             lake.Write(_frame(spark, 5), "gold.trial_funnel", DAY, merge_schema=True)])
    assert (_written(spark, paths, "gold.cpc_offers"), _written(spark, paths, "gold.trial_funnel")) == (3, 5)


def test_a_failing_write_lets_the_other_commit_then_raises(spark, tmp_path):
    """Side by side, an error does not stop the other write (one after another it would have); the error is raised
    once both have ended, and the failed table is left as it was (Delta's atomic commit)."""
    paths = Paths(tmp_path)
    with pytest.raises(Exception, match="boom in the rows"):
        lake.replace_all(paths, [lake.Write(_frame(spark, 3, boom=True), "gold.cpc_offers", DAY, merge_schema=True),
                                 lake.Write(_frame(spark, 5), "gold.trial_funnel", DAY, merge_schema=True)])
    assert (_written(spark, paths, "gold.cpc_offers"), _written(spark, paths, "gold.trial_funnel")) == (0, 5)


def test_a_table_twice_or_an_unknown_table_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(lake, "replace", lambda *a, **k: calls.append(a))
    paths = Paths(tmp_path)
    with pytest.raises(ValueError, match=r"each table once: \['gold.cpc_offers'\]"):
        lake.replace_all(paths, [lake.Write(None, "gold.cpc_offers", DAY), lake.Write(None, "gold.cpc_offers", DAY)])
    with pytest.raises(KeyError, match="unknown table 'gold.nothing'"):
        lake.replace_all(paths, [lake.Write(None, "gold.cpc_offers", DAY), lake.Write(None, "gold.nothing", DAY)])
    assert calls == []
