"""The tags stage's fixed costs per night (issue 21, docs/incremental-tags.md "The stage's fixed costs"): the type
check once per catalogue, the catalogue table rewritten only when it changes, row counts from the Delta commit,
the last earlier partition found among the last days, the statistics computed once and logged from their rows.
Each without changing what the tables hold. The first tests need no Spark."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from jobs.platform import lake
from jobs.platform.config import Paths
from jobs.stages.tags import apply_tags
from jobs.stages.tags import catalogue as catalogue_module
from jobs.stages.tags import stats as tagstats
from jobs.stages.tags.catalogue import (
    catalogue_rows,
    load_catalogue,
    mark_types_checked,
    same_catalogue,
    types_checked,
    types_fingerprint,
    types_marker,
)
from tests.helpers import SNAPSHOT, base_frame

D = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def cat():
    return load_catalogue()


@pytest.fixture()
def fresh_process(monkeypatch):
    """No catalogue checked yet in this process."""
    monkeypatch.setattr(catalogue_module, "_TYPES_CHECKED", set())


def _with(cat, tag_id: str, **changes):
    """A copy of the catalogue with one tag changed (layers rebuilt as loading does)."""
    tags = [dataclasses.replace(t, **changes) if t.id == tag_id else t for t in cat.tags]
    out = dataclasses.replace(cat, tags=tags, layers=[])
    catalogue_module.check(out)
    return out


class _Engine:
    """What types_fingerprint reads of a Spark session."""

    def __init__(self, version="4.2.0", ansi="true"):
        self.version, self._ansi = version, ansi
        self.conf = self

    def get(self, key, default=None):
        return self._ansi if key == "spark.sql.ansi.enabled" else default


# --- no Spark -------------------------------------------------------------------------------------------------
def test_commit_rows_reads_only_the_write_just_made():
    """The commit's numOutputRows, as in a real _delta_log commit of gold.customer_tags; None for anything else."""
    params = {"mode": "Overwrite", "partitionBy": '["snapshot_date"]', "predicate": "snapshot_date = '2026-11-20'",
              "canMergeSchema": "true"}
    metrics = {"numFiles": "8", "numRemovedFiles": "8", "numCopiedRows": "0", "numDeletedRows": "18783",
               "numOutputRows": "18783", "numOutputBytes": "8636287"}
    assert lake.commit_rows("WRITE", params, metrics, "snapshot_date = '2026-11-20'") == 18783
    assert lake.commit_rows("WRITE", params, metrics, "snapshot_date = '2026-11-19'") is None, "another partition's write"
    assert lake.commit_rows("OPTIMIZE", params, metrics, "snapshot_date = '2026-11-20'") is None
    assert lake.commit_rows("WRITE", params, {**metrics, "numCopiedRows": "5"}, "snapshot_date = '2026-11-20'") is None
    assert lake.commit_rows("WRITE", params, None, "snapshot_date = '2026-11-20'") is None, "metrics off"
    whole = {"mode": "Overwrite", "partitionBy": "[]", "canOverwriteSchema": "true"}
    assert lake.commit_rows("WRITE", whole, {"numFiles": "2", "numOutputRows": "359"}, None) == 359
    assert lake.commit_rows("WRITE", whole, {"numOutputRows": "359"}, "snapshot_date = '2026-11-20'") is None


def test_the_types_fingerprint_follows_what_check_types_reads(cat, monkeypatch):
    base = types_fingerprint(cat)
    assert base == types_fingerprint(load_catalogue()), "the same catalogue loaded again"
    assert types_fingerprint(_with(cat, "soc_age", description="another text", name_en="Age!")) == base, \
        "names and descriptions are not analysed"
    tid = next(t.id for t in cat.tags if t.kind == "rule")
    assert types_fingerprint(_with(cat, tid, expr=f"({cat.tags[cat.ids.index(tid)].expr})")) != base
    assert types_fingerprint(_with(cat, "soc_age", type="bigint")) != base
    assert types_fingerprint(load_catalogue(extra_tags=[{"id": "x_test", "family": "value", "type": "boolean",
                                                         "expr": "val_arpu_30d > 1", "name_en": "t", "name_zh": "t",
                                                         "description": "t"}])) != base
    assert types_fingerprint(cat, _Engine()) != base
    assert types_fingerprint(cat, _Engine()) == types_fingerprint(cat, _Engine())
    assert len({types_fingerprint(cat, e) for e in (_Engine(), _Engine(version="4.3.0"), _Engine(ansi="false"))}) == 3
    monkeypatch.setitem(catalogue_module.PROFILE_COLUMNS, "birth_year", "bigint")
    assert types_fingerprint(cat) != base, "a base column's type"
    monkeypatch.undo()
    monkeypatch.setattr(catalogue_module, "TYPES_CHECK_VERSION", catalogue_module.TYPES_CHECK_VERSION + 1)
    assert types_fingerprint(cat) != base


def test_a_checked_fingerprint_is_remembered_in_the_process_and_by_its_marker(tmp_path, fresh_process):
    paths, other = Paths(tmp_path / "root"), Paths(tmp_path / "other")
    assert not types_checked(paths, "abc")
    mark_types_checked(paths, "abc")
    marker = types_marker(paths, "abc")
    assert marker == tmp_path / "root" / "lake" / "_checks" / "tag_types_abc.ok" and marker.exists()
    assert [p.name for p in marker.parent.iterdir()] == [marker.name], "written atomically: no temporary file left"
    assert types_checked(paths, "abc") and types_checked(other, "abc"), "in this process, on any root"
    catalogue_module._TYPES_CHECKED.clear()  # another process
    assert not types_checked(other, "abc"), "no marker on the other root"
    assert types_checked(paths, "abc"), "its marker"
    assert "abc" in catalogue_module._TYPES_CHECKED
    assert not types_checked(paths, "abd")


def test_a_marker_that_cannot_be_written_is_a_warning(tmp_path, fresh_process, monkeypatch):
    warned: list[str] = []
    monkeypatch.setattr(catalogue_module.log, "warning", warned.append)
    (tmp_path / "lake").write_text("a file where the lake's folder should be")
    mark_types_checked(Paths(tmp_path), "abc")
    assert len(warned) == 1 and "could not be written" in warned[0]
    assert types_checked(Paths(tmp_path), "abc"), "still remembered in the process"


def test_same_catalogue_compares_columns_and_rows_in_any_order(cat):
    columns = [("tag_id", "string"), ("name_en", "string"), ("name_zh", "string"), ("family", "string"),
               ("kind", "string"), ("value_type", "string"), ("grain", "string"), ("definition", "string"),
               ("description", "string"), ("owner", "string"), ("version", "int"), ("empty_rule", "string"),
               ("default_value", "string")]
    rows = catalogue_rows(cat)
    assert same_catalogue(columns, list(reversed(rows)), cat)
    assert not same_catalogue(columns, rows[1:], cat)
    assert not same_catalogue(columns, [*rows, rows[0]], cat)
    assert not same_catalogue(columns, rows, _with(cat, "soc_age", description="changed"))
    assert not same_catalogue([*columns[:-1], ("default_value", "int")], rows, cat)
    assert not same_catalogue(columns[:-1], [r[:-1] for r in rows], cat)


def test_the_log_figures_come_from_the_rows():
    """drifting and empty_tags: what the log read back from gold.tag_stats (`where drift order by
    abs(share_change) desc limit 10`; the empty-tag filter), on plain rows."""
    def row(tag, value, customers, share, change=None, drift=False):
        return {"tag_id": tag, "value": value, "customers": customers, "share": share, "share_change": change,
                "drift": drift, "prev_share": None}

    rows = [row("a", "true", 5, 0.5, 0.3, True), row("a", "false", 5, 0.5, -0.3, True), row("b", "(null)", 10, 1.0),
            row("c", "(non-null)", 0, 0.0, 0.0), row("d", "x", 1, 0.1, -0.45, True), row("e", "(null)", 9, 0.9),
            row("f", "(non-null)", 3, 0.3, None, None), *[row(f"g{i}", "v", 1, 0.1, 0.2, True) for i in range(12)]]
    top = tagstats.drifting(rows)
    assert len(top) == 10 and top[0]["tag_id"] == "d" and {r["tag_id"] for r in top[1:3]} == {"a"}
    assert all(r["drift"] for r in top)
    assert tagstats.empty_tags(rows) == ["b", "c"]


def test_run_checks_types_once_and_before_any_write(tmp_path, monkeypatch, fresh_process, cat):
    """tags.run with Spark stubbed: the first run checks the catalogue's types before anything is written and
    leaves a marker; a second run (in the process, then in a fresh process) does not check; a changed catalogue
    is checked again, before anything is written; an unchanged catalogue table is not rewritten."""
    from jobs.stages import tags

    calls: list[str] = []

    class Spark(_Engine):
        catalog = type("Catalog", (), {"clearCache": staticmethod(lambda: None)})()

    catalogue_table: dict[str, list] = {}
    monkeypatch.setattr(tags, "check_types", lambda spark, c: calls.append("check_types"))
    monkeypatch.setattr(tags, "hash_key", lambda env, root: b"k")
    monkeypatch.setattr(tags.incremental, "features", lambda *a, **k: calls.append("features"))
    monkeypatch.setattr(tags, "base_frame", lambda *a, **k: None)
    monkeypatch.setattr(tags, "apply_tags", lambda base, c: "tags")
    monkeypatch.setattr(tags, "previous_snapshot", lambda *a: None)
    monkeypatch.setattr(tags, "carry_forward", lambda t, prev, c: t)
    monkeypatch.setattr(tags, "catalogue_frame", lambda spark, c: catalogue_rows(c))
    monkeypatch.setattr(tags, "catalogue_unchanged", lambda spark, paths, c: catalogue_table.get("rows") == catalogue_rows(c))

    def replace(df, paths, table, predicate, merge_schema=False):
        calls.append(f"replace {table}")
        if table == "gold.tag_catalogue":
            catalogue_table["rows"] = df

    monkeypatch.setattr(tags.lake, "replace", replace)
    monkeypatch.setattr(tags.lake, "last_commit_rows", lambda spark, paths, table, where: 3)
    paths = Paths(tmp_path)
    out = tags.run(Spark(), paths, D, cat=cat, stats=False)
    assert out == {"customers": 3, "tags": len(cat.tags)}
    assert calls == ["check_types", "features", "replace gold.customer_tags", "replace gold.tag_catalogue"]
    assert types_marker(paths, types_fingerprint(cat, Spark())).exists()
    for fresh in (False, True):
        if fresh:
            catalogue_module._TYPES_CHECKED.clear()
        calls.clear()
        tags.run(Spark(), paths, D, cat=cat, stats=False)
        assert calls == ["features", "replace gold.customer_tags"], "no check, the catalogue table not rewritten"
    calls.clear()
    rule = next(t for t in cat.tags if t.kind == "rule")
    tags.run(Spark(), paths, D, cat=_with(cat, rule.id, expr=f"({rule.expr})"), stats=False)
    assert calls == ["check_types", "features", "replace gold.customer_tags", "replace gold.tag_catalogue"]


def test_a_tag_s_mean_does_not_depend_on_the_order_spark_adds_the_partitions_in():
    """The same values summed in two orders differ in a double's last bits (as two runs' partial sums can); the
    statistics keep the mean to 12 significant digits, so both give the same number."""
    values = [0.1, 0.2, 0.3, 1e6 / 3, 7.7, 0.0001] * 50
    a, b = sum(values) / len(values), sum(sorted(values, reverse=True)) / len(values)
    assert a != b, "the case must show the order effect"
    assert tagstats.stable_mean(a) == tagstats.stable_mean(b) == pytest.approx(a, rel=1e-12)
    assert tagstats.stable_mean(None) is None and tagstats.stable_mean(2) == 2.0
    dust = (0.1 + 0.2 - 0.3, 0.3 - 0.2 - 0.1)  # a sum that cancels to zero, added in two orders
    assert dust[0] != dust[1] and {tagstats.stable_mean(d) for d in dust} == {0.0}


# --- Spark ----------------------------------------------------------------------------------------------------
def _stats_before(tags, cat):
    """stats.stats as it was before the SQL text (the Column API; a count, then the aggregation): the reference."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    family = F.create_map(*[x for t in cat.tags for x in (F.lit(t.id), F.lit(t.family))])
    categorical = [t.id for t in cat.tags if t.type in ("boolean", "string", "date")]
    numeric = [t.id for t in cat.tags if t.type in ("int", "bigint", "double")]
    parts = []
    if categorical:
        long = tags.select(F.explode(F.array(*[
            F.struct(F.lit(c).alias("tag_id"), F.coalesce(F.col(c).cast("string"), F.lit("(null)")).alias("value"))
            for c in categorical
        ])).alias("kv")).select("kv.tag_id", "kv.value")
        counted = long.groupBy("tag_id", "value").agg(F.count(F.lit(1)).alias("customers"))
        w = Window.partitionBy("tag_id").orderBy(F.col("customers").desc(), "value")
        counted = (
            counted.withColumn("_rank", F.row_number().over(w))
            .withColumn("value", F.when(F.col("_rank") <= tagstats.TOP_VALUES, F.col("value")).otherwise(F.lit("(other)")))
            .groupBy("tag_id", "value").agg(F.sum("customers").alias("customers"))
        )
        share = F.col("customers") / F.sum("customers").over(Window.partitionBy("tag_id"))
        parts.append(counted.select("tag_id", "value", F.col("customers").cast("long"), share.alias("share"),
                                    F.lit(None).cast("double").alias("mean")))
    if numeric:
        n = tags.count()
        agg = tags.agg(*[F.count(c).alias(f"n_{c}") for c in numeric], *[F.avg(c).alias(f"m_{c}") for c in numeric]).first()
        rows = [(c, "(non-null)", int(agg[f"n_{c}"]), (agg[f"n_{c}"] / n) if n else 0.0,
                 tagstats.stable_mean(agg[f"m_{c}"])) for c in numeric]  # rounded as stats rounds since 9b29407
        parts.append(tags.sparkSession.createDataFrame(rows, "tag_id string, value string, customers long, share double, mean double"))
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out.select("tag_id", family[F.col("tag_id")].alias("family"), "value", "customers", F.round("share", 6).alias("share"), "mean")


def _assert_same(got, want):
    """Same columns and types, same rows (any order), every value by its repr (a double's bits, null as None).
    Nullability is not compared: Delta stores every column nullable, a computed frame may not be."""
    assert [(f.name, f.dataType.simpleString()) for f in got.schema] == [(f.name, f.dataType.simpleString()) for f in want.schema]
    key = lambda r: repr(tuple(r))  # noqa: E731
    assert sorted(map(key, got.collect())) == sorted(map(key, want.collect()))


def test_stats_in_sql_text_equal_the_column_api_for_the_whole_catalogue(spark, cat):
    """Every tag of the catalogue on inline rows (one with nulls everywhere): the same rows, types and values."""
    rows = [
        {"customer_id": "A", "birth_year": 1950, "activation_date": dt.date(2015, 1, 1), "contacts_agent_30d": 4,
         "contract_end_date": SNAPSHOT + dt.timedelta(days=20), "optouts": ["sms_push"], "voice_out_min_7d": 7,
         "data_mb_30d": 123.4567, "balance": 12.5, "monthly_fee": 58.0},
        {"customer_id": "B", "birth_year": 2004, "activation_date": SNAPSHOT - dt.timedelta(days=30), "contacts_app_30d": 3,
         "data_mb_30d": 20000, "days_with_data_mb_30d": 30, "optouts": ["all"], "days_since_out_calls": 0, "balance": -3.0},
        {"customer_id": "C", "birth_year": None, "activation_date": None},
        {"customer_id": "D", "birth_year": 1980, "activation_date": dt.date(2020, 5, 1), "gender": "F", "city": "Dongguan",
         "monthly_fee": 128.0, "balance": 250.0},
    ]
    tags = apply_tags(base_frame(spark, cat, rows), cat).localCheckpoint()
    got, want = tagstats.stats(tags, cat), _stats_before(tags, cat)
    assert got.schema == want.schema, "nullability too"
    _assert_same(got, want)
    assert got.count() == want.count() > len(cat.tags)


def _tag_rows(spark, day: dt.date, values: list[tuple]):
    return spark.createDataFrame([(c, day, e, a) for c, e, a in values],
                                 "customer_id string, snapshot_date date, soc_elderly boolean, soc_age int")


def test_stats_run_writes_what_the_transforms_give_and_logs_from_the_rows(spark, tmp_path):
    """Three snapshots (the second 10 days after the first: its previous statistics are outside the 7 days looked
    at first); each written partition equals compare(stats(the day's tags), the previous day's statistics); the
    drift count and the empty tags are what the old read-back queries find in the table."""
    from pyspark.sql import functions as F

    small = load_catalogue(extra_tags=[])
    small.tags = [t for t in small.tags if t.id in ("soc_elderly", "soc_age")]
    paths = Paths(tmp_path)
    days = [D - dt.timedelta(days=11), D - dt.timedelta(days=1), D]
    values = [[("a", True, 70), ("b", False, 30), ("c", False, None), ("d", False, 40)],
              [("a", True, 70), ("b", True, 30), ("c", False, None), ("d", False, 41)],
              [("a", True, None), ("b", True, None), ("c", None, None), ("d", False, None)]]
    for day, v in zip(days, values, strict=True):
        lake.replace(_tag_rows(spark, day, v), paths, "gold.customer_tags", f"snapshot_date = '{day}'", merge_schema=True)
    for i, day in enumerate(days):
        previous = None if i == 0 else lake.read(spark, paths, "gold.tag_stats").where(F.col("snapshot_date") == F.lit(days[i - 1]))
        tags = lake.read(spark, paths, "gold.customer_tags").where(F.col("snapshot_date") == F.lit(day)).select("customer_id", *small.ids)
        want = tagstats.compare(tagstats.stats(tags, small), previous, small.drift_limit).select(
            F.lit(day).cast("date").alias("snapshot_date"), "*").localCheckpoint()
        out = tagstats.run(spark, paths, day, small)
        written = lake.read(spark, paths, "gold.tag_stats").where(F.col("snapshot_date") == F.lit(day))
        _assert_same(written.select(*want.columns), want)  # the table keeps its own column order
        old_drift = written.where("drift").count()
        old_empty = sorted(r["tag_id"] for r in written.where(
            ((F.col("value") == "(null)") & (F.col("share") >= 1.0)) | ((F.col("value") == "(non-null)") & (F.col("customers") == 0))
        ).collect())
        assert (out["drift"], sorted(out["empty"])) == (min(old_drift, 10), old_empty)
    assert out["drift"] > 0 and out["empty"] == ["soc_age"], "the test's last day drifts and has an empty tag"
    assert lake.last_commit_rows(spark, paths, "gold.tag_stats", f"snapshot_date = '{D}'") == written.count()


def test_last_commit_rows_and_last_partition_before_on_delta(spark, tmp_path):
    """The rows of the write just made (a replaceWhere partition, a whole-table overwrite), None after another
    partition's write is asked about; the latest earlier partition equals the max over the whole table."""
    from pyspark.sql import functions as F

    paths = Paths(tmp_path)
    assert lake.last_partition_before(spark, paths, "gold.customer_tags", "snapshot_date", D) is None, "no table"
    days = [D - dt.timedelta(days=k) for k in (40, 12, 3, 1)] + [D + dt.timedelta(days=2)]
    for k, day in enumerate(days):
        where = f"snapshot_date = '{day}'"
        lake.replace(_tag_rows(spark, day, [(f"c{i}", True, i) for i in range(k + 2)]), paths, "gold.customer_tags", where)
        assert lake.last_commit_rows(spark, paths, "gold.customer_tags", where) == k + 2
    assert lake.last_commit_rows(spark, paths, "gold.customer_tags", f"snapshot_date = '{days[0]}'") is None
    lake.replace(_tag_rows(spark, days[1], [("x", False, 1)]), paths, "gold.customer_tags", f"snapshot_date = '{days[1]}'")
    assert lake.last_commit_rows(spark, paths, "gold.customer_tags", f"snapshot_date = '{days[1]}'") == 1, "a rerun"
    # a partition replaced by no rows holds none: the latest before it is the one before (its files are removed)
    lake.replace(_tag_rows(spark, days[3], []), paths, "gold.customer_tags", f"snapshot_date = '{days[3]}'")
    table = lake.read(spark, paths, "gold.customer_tags")
    for before in [D, D - dt.timedelta(days=1), D - dt.timedelta(days=3), D - dt.timedelta(days=12),
                   D - dt.timedelta(days=40), D + dt.timedelta(days=30)]:
        want = table.where(F.col("snapshot_date") < F.lit(before)).agg(F.max("snapshot_date")).first()[0]
        assert lake.last_partition_before(spark, paths, "gold.customer_tags", "snapshot_date", before) == want, before
    assert lake.last_partition_before(spark, paths, "gold.customer_tags", "snapshot_date", D) == days[2], "the emptied day skipped"
    frame = spark.createDataFrame(catalogue_rows(load_catalogue()), catalogue_module.CATALOGUE_SCHEMA)
    lake.replace(frame, paths, "gold.tag_catalogue", None)
    assert lake.last_commit_rows(spark, paths, "gold.tag_catalogue", None) == len(load_catalogue().tags)
    # the version and the table id, read from the log without Spark, are what Spark's Delta says
    from delta.tables import DeltaTable

    for name in ("gold.customer_tags", "gold.tag_catalogue"):
        delta = DeltaTable.forPath(spark, paths.table(name))
        assert lake.version(spark, paths, name) == delta.history(1).select("version").first()[0]
        assert lake.table_id(spark, paths, name) == delta.detail().select("id").first()[0]
    assert lake.version(spark, paths, "gold.customer_tags") == len(days) + 1, "one commit a write (the rerun, the emptied day)"


def test_the_catalogue_table_is_compared_not_rewritten(spark, tmp_path, cat):
    from jobs.stages.tags import catalogue_frame, catalogue_unchanged

    paths = Paths(tmp_path)
    assert not catalogue_unchanged(spark, paths, cat), "no table yet"
    lake.replace(catalogue_frame(spark, cat), paths, "gold.tag_catalogue", None)
    assert catalogue_unchanged(spark, paths, cat)
    assert not catalogue_unchanged(spark, paths, _with(cat, "soc_age", description="changed"))
    assert not catalogue_unchanged(spark, paths, load_catalogue(extra_tags=[{
        "id": "x_test", "family": "value", "type": "boolean", "expr": "val_arpu_30d > 1", "name_en": "t", "name_zh": "t",
        "description": "t"}]))


# --- end to end: the sample's last day run again (e2e) ----------------------------------------------------------
@pytest.mark.e2e
def test_a_rerun_keeps_every_output_and_skips_the_fixed_costs(spark, sample, copy_of, monkeypatch, cat):
    """The tags stage of the sample's last day run again on a copy of its root, as a fresh process without the
    type check's marker: the types are checked (once), and gold.customer_tags, gold.tag_stats, gold.tag_catalogue,
    the state and its log row hold what the nightly DAG's run wrote; the catalogue table gets no new Delta
    version. Run again as a fresh process: the marker spares the check. Then a catalogue with one rule's
    expression written differently (same values) and one description changed: the types are checked before the
    first write, the catalogue table is rewritten with the new rows, and the tags are the same."""
    from pyspark.sql import functions as F

    from jobs.stages import tags
    from jobs.stages.tags import incremental as inc

    paths, end = copy_of("rerun").paths, sample["spec"].end_date
    where = F.col("snapshot_date") == F.lit(end)

    def snapshot():
        return {
            "tags": lake.read(spark, paths, "gold.customer_tags").where(where).localCheckpoint(),
            "stats": lake.read(spark, paths, "gold.tag_stats").where(where).localCheckpoint(),
            "catalogue": lake.read(spark, paths, "gold.tag_catalogue").localCheckpoint(),
            "state": lake.read(spark, paths, inc.STATE_TABLE).where(F.col("state_date") == F.lit(end)).localCheckpoint(),
        }

    before, version = snapshot(), lake.version(spark, paths, "gold.tag_catalogue")
    checks: list[str] = []  # check_types and the tables written, in order
    real_check, real_replace = tags.check_types, lake.replace

    def check_types(spark_, cat_):
        checks.append("check_types")
        real_check(spark_, cat_)

    def replace(df, paths_, table, *args, **kwargs):
        checks.append(table)
        real_replace(df, paths_, table, *args, **kwargs)

    monkeypatch.setattr(tags, "check_types", check_types)
    monkeypatch.setattr(lake, "replace", replace)
    fingerprint = types_fingerprint(cat, spark)
    types_marker(paths, fingerprint).unlink(missing_ok=True)
    monkeypatch.setattr(catalogue_module, "_TYPES_CHECKED", set())  # a fresh process
    out = tags.run(spark, paths, end)
    assert checks.count("check_types") == 1 and checks[0] == "check_types"
    assert "gold.tag_catalogue" not in checks and lake.version(spark, paths, "gold.tag_catalogue") == version
    assert types_marker(paths, fingerprint).exists()
    after = snapshot()
    for name in before:
        _assert_same(after[name], before[name])
    assert out["customers"] == after["tags"].count()
    log_row = lake.read(spark, paths, inc.STATE_LOG).where(F.col("state_date") == F.lit(end)).first()
    assert log_row["rows"] == after["state"].count()

    checks.clear()
    catalogue_module._TYPES_CHECKED.clear()  # another fresh process: its marker tells
    tags.run(spark, paths, end, stats=False)
    assert "check_types" not in checks and "gold.tag_catalogue" not in checks

    rule = next(t for t in cat.tags if t.kind == "rule")
    changed = _with(_with(cat, rule.id, expr=f"({rule.expr})"), "soc_age", description="Age in whole years (changed).")
    checks.clear()
    tags.run(spark, paths, end, cat=changed, stats=False)
    assert checks.count("check_types") == 1 and checks[0] == "check_types"
    assert "gold.tag_catalogue" in checks and lake.version(spark, paths, "gold.tag_catalogue") == version + 1
    assert tags.catalogue_unchanged(spark, paths, changed)
    _assert_same(lake.read(spark, paths, "gold.customer_tags").where(where), before["tags"])


def test_the_small_reads_without_spark_give_what_spark_s_queries_gave(spark, tmp_path):
    """The tag state log's valid states of a plan in a date range (a null ``valid`` is not valid, another plan's
    rows and the dates outside are left out) and the day's customers, read in the process (``arrow_lake``), equal
    the Spark queries they replace; a missing table is still a clear error for the customers."""
    from jobs.stages.cpc.inputs import day_customers
    from jobs.stages.tags import incremental

    paths = Paths(tmp_path)

    class Plan:
        def __init__(self, fp):
            self.fp = fp

        def fingerprint(self):
            return self.fp

    log_rows = [(D - dt.timedelta(days=k), "step", 100 + k, plan, 5, 1.0, dt.datetime(2026, 11, 20, 1, k), valid)
                for k, plan, valid in [(1, "p", True), (2, "p", None), (3, "q", True), (4, "p", False), (5, "p", True),
                                       (9, "p", True), (0, "p", True)]]
    schema = ("state_date date, method string, silver_version bigint, plan string, rows bigint, seconds double, "
              "built_at timestamp, valid boolean")
    assert incremental.logged_states(spark, paths, Plan("p"), D) == {}, "no log yet"
    lake.replace(spark.createDataFrame(log_rows, schema), paths, incremental.STATE_LOG, None)
    lake.replace(spark.createDataFrame([("c", D)], "customer_id string, state_date date"), paths, incremental.STATE_TABLE, None)
    for plan, before, since in [("p", D, None), ("p", D, D - dt.timedelta(days=5)), ("q", D + dt.timedelta(days=1), None),
                                ("r", D, None)]:
        sql = f"plan = '{plan}' AND valid AND state_date < DATE'{before}'" + (f" AND state_date >= DATE'{since}'" if since else "")
        want = {r["state_date"]: int(r["silver_version"])
                for r in lake.read(spark, paths, incremental.STATE_LOG).where(sql).select("state_date", "silver_version").collect()}
        assert incremental.logged_states(spark, paths, Plan(plan), before, since) == want, (plan, before, since)
    assert incremental.logged_states(spark, paths, Plan("p"), D, D - dt.timedelta(days=5)) == {D - dt.timedelta(days=1): 101,
                                                                                           D - dt.timedelta(days=5): 105}
    # arrow_lake.read on a flag Spark's Delta keeps no minimum or maximum for: the scan alone dropped every file
    import pyarrow.dataset as ds

    from jobs.platform import arrow_lake

    for where, sql in [(ds.field("valid") == True, "valid"), (ds.field("valid") == False, "NOT valid"),  # noqa: E712
                       ((ds.field("plan") == "p") & ds.field("valid"), "plan = 'p' AND valid")]:
        want = sorted(r[0] for r in lake.read(spark, paths, incremental.STATE_LOG).where(sql).select("state_date").collect())
        got = sorted(r["state_date"] for r in arrow_lake.read(paths, incremental.STATE_LOG, ["state_date"], where=where))
        assert got == want and want, sql
    one = arrow_lake.read(paths, incremental.STATE_LOG, ["silver_version", "valid"], D - dt.timedelta(days=2), ds.field("plan") == "p")
    assert one == [{"silver_version": 102, "valid": None}], "the date's partition, the columns asked for, in their order"

    with pytest.raises(FileNotFoundError, match="gold.customer_segment"):
        day_customers(spark, paths, D)
    seg = spark.createDataFrame([(f"c{i}", D - dt.timedelta(days=i % 2)) for i in range(7)], "customer_id string, snapshot_date date")
    lake.replace(seg, paths, "gold.customer_segment", None)
    for day in (D, D - dt.timedelta(days=1), D - dt.timedelta(days=2)):
        want = lake.read(spark, paths, "gold.customer_segment").where(f"snapshot_date = '{day}'").count()
        assert day_customers(spark, paths, day) == want == day_customers(spark, paths, day, version=0), day
