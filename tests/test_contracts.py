"""Each contract written once: the Great Expectations suites agree with schemas/, the type map covers every
contract type, and (on the sample run) every declared table has its declared columns and unique, non-null keys."""

from __future__ import annotations

import json

import pytest

from jobs.stages.ingest import quality
from schemas import FILES, TABLES
from schemas.types import DUCKDB, TYPES, arrow


@pytest.mark.parametrize("kind", list(FILES))
def test_suite_columns_and_not_nulls_follow_the_schema(kind):
    schema, suite = FILES[kind], quality.load_suite(kind)
    named = {e["kwargs"]["column"] for e in suite.expectations if "column" in e["kwargs"]}
    assert named <= set(schema.names), f"{kind}: the suite names columns the schema does not have: {sorted(named - set(schema.names))}"
    not_null = {e["kwargs"]["column"] for e in suite.expectations if e["type"] == "expect_column_values_to_not_be_null"}
    assert not_null == {c.name for c in schema.columns if not c.nullable}, f"{kind}: not-null expectations differ from schemas/"
    ordered = [e["kwargs"]["column_list"] for e in suite.expectations if e["type"] == "expect_table_columns_to_match_ordered_list"]
    assert ordered == [schema.names], f"{kind}: the suite's column list differs from schemas/"


def test_every_contract_type_has_its_spark_arrow_and_duckdb_form():
    used = {c.type for f in FILES.values() for c in f.columns} | {c.type for t in TABLES.values() for c in t.columns}
    assert used <= TYPES
    assert set(DUCKDB) == set(TYPES)
    assert {str(arrow(t)) for t in ("int", "double", "timestamp")} == {"int32", "double", "timestamp[s]"}


def test_every_table_declares_its_grain_and_keys():
    for name, table in TABLES.items():
        assert table.grain, name
        assert table.columns, f"{name} declares no columns"
        if name not in ("bronze.quarantine", "ops.run_log", "ops.export_audit"):  # append-only records have no key
            assert table.keys, f"{name} declares no keys"


def _open_columns(name: str) -> list[tuple[str, str]]:
    """The columns a table declares by reference (``Table.open_columns``): the daily measures, the tags (a type
    of None: the name alone is checked)."""
    if name == "silver.customer_day":
        from jobs.stages.conform import MEASURES

        return [(m, None) for _, (_, ms) in MEASURES.items() for m, _sql in ms]  # types as Spark's sums give them
    if name == "gold.customer_tags":
        from jobs.stages.tags import load_catalogue

        return [(t.id, t.type) for t in load_catalogue().tags]
    if name == "silver.tag_state":
        from jobs.stages.tags import load_catalogue
        from jobs.stages.tags.incremental import plan_of

        return plan_of(load_catalogue()).types()
    return []


@pytest.mark.e2e
def test_tables_on_the_sample_have_their_columns_and_unique_keys(spark, sample):
    from pyspark.sql import functions as F

    from jobs.platform import lake

    paths = sample["paths"]
    for name, table in TABLES.items():
        if not lake.exists(spark, paths, name):
            continue
        df = lake.read(spark, paths, name)
        declared = [(c.name, c.type) for c in table.columns] + _open_columns(name)
        actual = [(f.name, f.dataType.simpleString() if t else None) for f, (_, t) in zip(df.schema.fields, declared, strict=False)]
        assert len(df.schema.fields) == len(declared) and actual == declared, f"{name}: columns differ from schemas/ ({table.open_columns or 'all declared'})"
        if table.keys:
            assert df.where(" OR ".join(f"`{k}` IS NULL" for k in table.keys)).count() == 0, f"{name}: null key"
            dupes = df.groupBy(*table.keys).agg(F.count(F.lit(1)).alias("n")).where("n > 1").limit(5).collect()
            assert not dupes, f"{name}: keys {table.keys} not unique, e.g. {[r.asDict() for r in dupes]}"


def test_suites_are_json_with_a_bad_row_limit():
    for kind in FILES:
        raw = json.loads(quality.EXPECTATIONS_DIR.joinpath(f"{kind}.json").read_text())
        assert 0 < raw["meta"]["max_bad_row_share"] < 1, kind
