"""The stages' breakdown (bench/tags_breakdown.py: tags by default, score and the other nightly stages with
--stage) without Spark: its arguments, every stage's targets, the timing wrapper on plain functions (nested parts,
calls added up, originals put back), the counters, the driver log's search, the plan text's codegen coverage and
the table. The run itself needs Spark and a storage root."""

from __future__ import annotations

import datetime as dt
import sys
import types
from pathlib import Path

import pytest

from bench import tags_breakdown as tb


class Clock:
    """A clock that moves only when told: each reading advances it by ``step`` seconds."""

    def __init__(self, step: float = 1.0) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class JobCounter:
    """Fake monotonic counters: ``jobs`` grows when a fake job runs."""

    def __init__(self) -> None:
        self.jobs = 0

    def __call__(self) -> dict[str, float]:
        return {"jobs": float(self.jobs)}


@pytest.fixture
def fake_stage(monkeypatch):
    """A module ``fake_stage`` whose ``outer`` calls ``inner`` twice through the module, as the stage calls
    its helpers; ``inner`` runs one fake Spark job; ``broken`` raises."""
    jobs = JobCounter()
    mod = types.ModuleType("fake_stage")

    def inner(x):
        jobs.jobs += 1
        return x + 1

    def outer(x):
        return mod.inner(mod.inner(x))

    def broken():
        raise ValueError("boom")

    mod.inner, mod.outer, mod.broken = inner, outer, broken
    monkeypatch.setitem(sys.modules, "fake_stage", mod)
    return mod, jobs


def test_arguments_and_their_defaults(tmp_path):
    args = tb.parse_args(["--root", str(tmp_path), "--date", "2026-11-20"])
    assert (args.stage, args.root, args.date, args.repeat) == ("tags", tmp_path, dt.date(2026, 11, 20), 2)
    assert args.out == tb.RESULT and args.out.name == "tags_breakdown.json" and args.out.parent.name == "results"
    assert (args.driver_log, args.full, args.prepare, args.plan_probe, args.codegen_stats) == (None, False, True, True, False)
    args = tb.parse_args(["--date", "2026-11-20", "--repeat", "3", "--out", "x.json", "--driver-log", "d.log",
                          "--full", "--no-prepare", "--no-plan-probe", "--codegen-stats"])
    assert (args.root, args.repeat, args.out, args.driver_log) == (None, 3, Path("x.json"), Path("d.log"))
    assert (args.full, args.prepare, args.plan_probe, args.codegen_stats) == (True, False, False, True)


def test_another_stage_has_its_own_result_and_no_full_mode():
    args = tb.parse_args(["--stage", "score", "--date", "2026-11-20"])
    assert args.stage == "score" and args.out == tb.RESULT.with_name("score_breakdown.json")
    assert args.out.parent == tb.RESULT.parent
    assert tb.parse_args(["--stage", "score", "--date", "2026-11-20", "--out", "x.json"]).out == Path("x.json")
    assert list(tb.TARGETS) == ["conform", "tags", "segments", "propensity", "score", "export", "evaluate"]


@pytest.mark.parametrize("bad", [["--repeat", "0", "--date", "2026-11-20"], ["--date", "2026-13-01"], [],
                                 ["--stage", "score", "--date", "2026-11-20", "--full"],
                                 ["--stage", "ingest", "--date", "2026-11-20"]])
def test_bad_arguments_are_refused(bad):
    with pytest.raises(SystemExit):
        tb.parse_args(bad)


def test_wrapped_functions_nest_add_up_and_are_put_back(fake_stage):
    mod, jobs = fake_stage
    originals = (mod.inner, mod.outer)
    rec = tb.Recorder(clock=Clock(), counters=jobs)
    with rec.patched((tb.Target("fake_stage", "outer"), tb.Target("fake_stage", "inner"))):
        assert mod.outer(1) == 3, "the wrapped functions return what the originals return"
        assert mod.inner.__name__ == "inner" and mod.inner is not originals[0]
    assert (mod.inner, mod.outer) == originals
    outer = rec.root.children["fake_stage.outer"]
    inner = outer.children["fake_stage.inner"]
    assert list(rec.root.children) == ["fake_stage.outer"], "inner ran only inside outer"
    assert (outer.calls, inner.calls) == (1, 2)
    assert (outer.counters["jobs"], inner.counters["jobs"]) == (2, 2), "a part counts the jobs of its inner parts"
    # each reading of the clock advances it by 1 s: inner's two calls take 1 s each, outer 1 s more than them
    assert (inner.seconds, outer.seconds, outer.self_seconds) == (2.0, 5.0, 3.0)
    assert inner.summary() == {"calls": 2, "seconds": 2.0, "self_seconds": 2.0, "jobs": 2}


def test_a_failing_function_is_recorded_and_everything_put_back(fake_stage):
    mod, jobs = fake_stage
    original = mod.broken
    rec = tb.Recorder(clock=Clock(), counters=jobs)
    with pytest.raises(ValueError, match="boom"), rec.patched((tb.Target("fake_stage", "broken"),)):
        mod.broken()
    assert mod.broken is original
    assert rec.root.children["fake_stage.broken"].calls == 1


def test_a_target_that_is_gone_fails_before_anything_runs_and_leaves_nothing_patched(fake_stage):
    mod, _ = fake_stage
    original = mod.inner
    rec = tb.Recorder()
    with pytest.raises(AttributeError, match="fake_stage.gone is not a function any more"):
        with rec.patched((tb.Target("fake_stage", "inner"), tb.Target("fake_stage", "gone"))):
            pytest.fail("must not run")
    assert mod.inner is original


def test_methods_are_wrapped_on_the_class_and_an_inherited_one_shows_through_again():
    class Base:
        def count(self):
            return 7

    class Frame(Base):
        def collect(self):
            return [self.count()]

    sys.modules[__name__].Frame = Frame  # the owner is named "module:Class"
    try:
        rec = tb.Recorder(clock=Clock())
        owner = f"{__name__}:Frame"
        with rec.patched((tb.Target(owner, "collect"), tb.Target(owner, "count"))):
            assert Frame().collect() == [7]
        assert "count" not in vars(Frame) and Frame.count is Base.count, "the inherited method is not left copied"
        assert list(rec.root.children["Frame.collect"].children) == ["Frame.count"]
    finally:
        del sys.modules[__name__].Frame


def test_each_checkpoint_is_its_own_part_named_by_the_line_that_called_it():
    class Frame:
        def localCheckpoint(self):
            return self

    sys.modules[__name__].Frame = Frame
    try:
        rec = tb.Recorder(clock=Clock())
        with rec.patched((tb.Target(f"{__name__}:Frame", "localCheckpoint", by_caller=True),)):
            here = sys._getframe().f_lineno
            Frame().localCheckpoint()
            Frame().localCheckpoint()
            for _ in range(2):
                Frame().localCheckpoint()
        name = Path(__file__).name
        labels = {label: node.calls for label, node in rec.root.children.items()}
        assert labels == {f"Frame.localCheckpoint @ tests/{name}:{here + 1}": 1,
                          f"Frame.localCheckpoint @ tests/{name}:{here + 2}": 1,
                          f"Frame.localCheckpoint @ tests/{name}:{here + 4}": 2}, "a call in a loop adds up"
    finally:
        del sys.modules[__name__].Frame
    assert tb.Target("m", "f", by_caller=True).name((), {}) == "m.f", "no caller known: the plain name"


def test_the_lakes_functions_are_labelled_with_their_table():
    t = tb.Target("jobs.platform.lake", "replace", by_table=True)
    assert t.name(("df", "paths", "gold.customer_tags", "snapshot_date = '2026-11-20'"), {}) == "lake.replace gold.customer_tags"
    assert t.name(("spark", "paths"), {"table": "silver.tag_state"}) == "lake.replace silver.tag_state"
    assert tb.Target("pyspark.sql.classic.dataframe:DataFrame", "count").name((), {}) == "DataFrame.count"
    assert tb.Target("jobs.stages.tags.incremental", "window_features", "engine.window_features").name((), {}) \
        == "engine.window_features"


def test_every_target_of_every_stage_is_a_function_of_the_current_code():
    """The breakdown wraps the stages' real functions: one renamed or removed fails here, not in a long run."""
    from jobs.orchestration.registry import NIGHTLY_NAMES

    assert set(tb.TARGETS) == set(tb.SETUPS) and set(tb.TARGETS) <= set(NIGHTLY_NAMES)
    for stage, targets in tb.TARGETS.items():
        for t in targets:
            assert callable(getattr(t.resolve(), t.attr, None)), f"{stage}: {t.owner}.{t.attr}"
        assert len({(t.owner, t.attr) for t in targets}) == len(targets), f"{stage}: a target twice"
        assert set(tb.COMMON) <= set(targets), f"{stage}: the lake and DataFrame targets are every stage's"
    entries = {"conform": "jobs.stages.conform", "tags": "jobs.stages.tags", "segments": "jobs.stages.segments",
               "score": "jobs.stages.cpc", "export": "jobs.stages.export", "evaluate": "jobs.stages.evaluate"}
    for stage, module in entries.items():
        assert (module, "run") in {(t.owner, t.attr) for t in tb.TARGETS[stage]}, f"{stage}: its run is timed"
    assert {("jobs.stages.propensity", "score"), ("jobs.stages.uplift", "score")} <= {
        (t.owner, t.attr) for t in tb.TARGETS["propensity"]}, "the propensity stage scores both kinds of model"


def test_the_tags_targets_are_those_of_the_tags_stage():
    import jobs.stages.tags as stage

    called = {"load_catalogue", "check_types", "base_frame", "apply_tags", "previous_snapshot", "carry_forward",
              "catalogue_frame"}
    names = {n for fn in (stage.run, stage._checked, stage._write) for n in fn.__code__.co_names}
    assert called <= names, "run() (or the helpers it shares with snapshots()) calls each by its module-level name"
    assert {(t.owner, t.attr) for t in tb.TARGETS["tags"]} >= {("jobs.stages.tags", a) for a in called}
    assert tb.TARGETS["tags"] == (*tb.TAGS_TARGETS, *tb.COMMON)


def _project_functions_called(fn, namespace) -> set[str]:
    """The names ``fn`` calls that are the project's functions in ``namespace`` (its module's globals)."""
    import inspect

    found = {n: vars(namespace).get(n) for n in fn.__code__.co_names}
    return {n for n, f in found.items() if inspect.isfunction(f) and f.__module__.split(".")[0] in ("jobs", "models")}


def test_the_score_targets_are_every_function_its_run_and_decide_call():
    """A function cpc.run calls is looked up in jobs.stages.cpc's namespace (imported there from inputs.py and
    decide.py): wrapped there, not where it is defined, or the breakdown would not see the call."""
    import importlib

    import jobs.stages.cpc as cpc

    # the modules themselves: jobs.stages.cpc's attributes inputs and decide are the functions it imports
    assign_module, decide_module, inputs_module = (importlib.import_module(f"jobs.stages.cpc.{m}")
                                                   for m in ("assign", "decide", "inputs"))
    targets = {(t.owner, t.attr) for t in tb.TARGETS["score"]}
    called = _project_functions_called(cpc.run, cpc)
    assert {"product_channel_table", "inputs", "decide", "funnel_rows", "_written"} <= called
    assert {("jobs.stages.cpc", a) for a in called} <= targets
    assert {("jobs.stages.cpc.inputs", a) for a in _project_functions_called(inputs_module.inputs, inputs_module)} <= targets
    inner = _project_functions_called(decide_module.decide, decide_module) - {"_rank", "literal_map", "step_no_col"}
    assert {"assign_priced", "_with_priority"} <= inner and {("jobs.stages.cpc.decide", a) for a in inner} <= targets
    for fn in (assign_module.assign_priced, assign_module.tier, assign_module.tier_prices):
        assert {("jobs.stages.cpc.assign", a) for a in _project_functions_called(fn, assign_module)
                if a not in ("_greatest", "choice_col", "margin_col", "_surplus")} <= targets
    assert ("pyspark.sql.classic.dataframe:DataFrame", "localCheckpoint") in targets


def test_each_stage_checks_its_own_tables_and_only_tags_prepares(tmp_path):
    root = tmp_path / "root"
    paths = types.SimpleNamespace(root=root, table=lambda t: str(root / "lake" / t.replace(".", "/")))
    (root / "lake" / "gold" / "customer_tags" / "_delta_log").mkdir(parents=True)
    with pytest.raises(SystemExit, match="no gold.customer_segment, bronze.orders, bronze.contacts"):
        tb.check_root(paths, tb.SETUPS["score"].tables)
    tb.check_root(paths, tb.SETUPS["segments"].tables)
    assert [s for s, setup in tb.SETUPS.items() if setup.prepare or setup.state or setup.full] == ["tags"]


def test_a_counter_falls_back_or_is_reported_missing():
    def fails():
        raise RuntimeError("no such method\nin the JVM")

    c = tb.Counters({"jobs": fails, "stages": fails, "compile_seconds": lambda: 3}, {"jobs": lambda: 12})
    assert c() == {"jobs": 12.0, "compile_seconds": 3.0}
    assert c.used == {"jobs": "fallback", "compile_seconds": "primary"}
    assert c.missing == {"stages": "primary: RuntimeError: no such method"}


LOG = """26/12/02 10:00:01 INFO CodeGenerator: Code generated in 12.5 ms
26/12/02 10:00:02 INFO CodeGenerator: Generated method too long to be JIT compiled: GeneratedClass.processNext is 9120 bytes
26/12/02 10:00:03 INFO WholeStageCodegenExec: Found too long generated codes and JIT optimization might not work: the bytecode size (70001) is above the limit 65535, and the whole-stage codegen was disabled for this plan (id=3). To avoid this, you can raise the limit `spark.sql.codegen.hugeMethodLimit`:
*(3) Project [a#1]
26/12/02 10:00:04 INFO CodeGenerator: Code generated in 100 ms
26/12/02 10:00:05 WARN WholeStageCodegenExec: Whole-stage codegen disabled for plan (id=4):
"""


def test_the_driver_log_is_searched_in_total_and_per_part(tmp_path):
    path = tmp_path / "driver.log"
    path.write_text("old run: Code generated in 1 ms\n")
    start = tb.log_size(path)()
    with path.open("a") as f:
        f.write(LOG)
    first = LOG.index("26/12/02 10:00:03")  # the first part saw the first two lines, the second the rest
    node_a = tb.Node("a", spans=[(start, start + first)])
    node_b = tb.Node("b", spans=[(start + first, start + len(LOG))])
    tree = tb.Node("", children={"a": node_a, "b": node_b})
    got = tb.driver_log(path, start, [tree])
    assert got["counts"] == {"codegen_too_long": 1, "huge_method_limit": 1, "codegen_disabled": 1,
                             "method_too_long_for_jit": 1, "compile_failed": 0, "over_64kb": 0, "code_generated": 2}
    assert got["code_generated_ms"] == 112.5, "the earlier run's line is not counted"
    assert node_a.log == {"method_too_long_for_jit": 1, "code_generated": 1}
    assert node_b.log == {"codegen_too_long": 1, "huge_method_limit": 1, "codegen_disabled": 1, "code_generated": 1}
    assert node_b.summary()["log"] == node_b.log
    assert "not found" in tb.driver_log(tmp_path / "none.log", None, [])["note"]
    assert tb.driver_log(None, None, [])["path"] is None
    assert "nothing was written" in tb.driver_log(path, path.stat().st_size, [])["note"]


def test_a_part_records_the_bytes_the_driver_logged_while_it_ran(tmp_path):
    path = tmp_path / "driver.log"
    path.write_text("")
    rec = tb.Recorder(log_size=tb.log_size(path))
    with rec.part("write"):
        path.write_text("Code generated in 3 ms\n")
    assert rec.root.children["write"].spans == [(0, 23)]


PLAN = """*(5) Project [customer_id#1, snapshot_date#2]
+- *(5) SortMergeJoin [customer_id#1], [customer_id#9], LeftOuter
   :- *(2) Sort [customer_id#1 ASC NULLS FIRST], false, 0
   :  +- Exchange hashpartitioning(customer_id#1, 8), ENSURE_REQUIREMENTS, [plan_id=10]
   :     +- Project [customer_id#1, ... 358 more fields]
   :        +- InMemoryTableScan [customer_id#1, ... 358 more fields]
   :              +- InMemoryRelation [customer_id#1, ... 358 more fields], StorageLevel(disk, memory, deserialized, 1 replicas)
   +- HashAggregate(keys=[customer_id#9], functions=[sum(x#3), ... 160 more fields])
      +- *(1) ColumnarToRow
         +- FileScan parquet [customer_id#9,x#3] Batched: true
"""


def test_the_plan_text_says_which_operators_whole_stage_codegen_covers():
    got = tb.codegen_coverage(PLAN)
    assert got["codegen_stages"] == 3
    assert got["in_codegen"] == {"Project": 1, "SortMergeJoin": 1, "Sort": 1, "ColumnarToRow": 1}
    assert got["outside_codegen"] == {"Exchange": 1, "Project": 1, "InMemoryTableScan": 1, "InMemoryRelation": 1,
                                      "HashAggregate": 1, "FileScan": 1}
    assert got["outside_candidates"] == {"Project": 1, "HashAggregate": 1}, "exchanges and scans are never inside"


class FakeConf:
    def __init__(self) -> None:
        self.values = {"spark.sql.adaptive.enabled": "true"}

    def get(self, key):
        return self.values[key]

    def set(self, key, value):
        self.values[key] = value


class NoPlan:
    """A frame whose JVM side fails: the probe must report it, not raise."""

    columns = ["customer_id", "a"]

    @property
    def _jdf(self):
        raise RuntimeError("py4j: no such method")


def test_a_failed_plan_probe_is_reported_and_adaptive_execution_put_back():
    spark = types.SimpleNamespace(conf=FakeConf())
    got = tb.plan_probe(spark, NoPlan())
    assert got == {"columns": 2, "error": "RuntimeError: py4j: no such method"}
    assert spark.conf.values["spark.sql.adaptive.enabled"] == "true"


def test_the_probe_runs_only_before_a_delta_write_as_a_part_of_its_own(monkeypatch):
    rec, plans = tb.Recorder(clock=Clock()), []
    monkeypatch.setattr(tb, "plan_probe", lambda spark, df, codegen_stats: {"columns": len(df)})
    before = tb.probe_hook(rec, None, plans, 1, False)
    before(tb.Target("jobs.platform.lake", "read", by_table=True), ("spark", "paths", "gold.customer_tags"), {})
    before(tb.Target("jobs.platform.lake", "replace", by_table=True), (["a", "b"], "paths", "gold.tag_stats", None), {})
    assert plans == [{"repeat": 1, "table": "gold.tag_stats", "columns": 2}]
    assert rec.root.children["[probe] plan gold.tag_stats"].probe


def _tree(seconds: float, jobs: int, *, full: bool = False) -> tb.Node:
    """registry: tags > tags.run > (check_types, no job; incremental.features > step or state_full; a probe)."""
    inner = "incremental.state_full" if full else "incremental.step"
    feats = tb.Node("incremental.features", calls=1, seconds=seconds / 2, counters={"jobs": jobs},
                    children={inner: tb.Node(inner, calls=1, seconds=0.1, counters={"jobs": 0})})
    check = tb.Node("tags.check_types", calls=1, seconds=2.0, counters={"jobs": 0})
    probe = tb.Node("[probe] plan gold.customer_tags", probe=True, calls=1, seconds=0.5, counters={"jobs": 0})
    run = tb.Node("tags.run", calls=1, seconds=seconds, counters={"jobs": jobs},
                  children={c.label: c for c in (check, feats, probe)})
    top = tb.Node("registry: tags", calls=1, seconds=seconds, counters={"jobs": jobs}, children={"tags.run": run})
    return tb.Node("", children={"registry: tags": top})


def test_totals_say_where_no_job_ran_and_how_the_state_was_got():
    """No job: check_types (2 s) and the step inside the features (0.1 s); the probe is counted apart."""
    got = tb.totals(_tree(10.0, 7))
    assert got == {"seconds": 10.0, "jobs": 7, "stages": None, "compile_seconds": None, "probe_seconds": 0.5,
                   "no_job_seconds": 2.1, "timed_calls": 6, "state": "step"}
    assert tb.totals(_tree(10.0, 7, full=True))["state"] == "from the history"
    assert tb.summary_line(1, got, cold=True) == ("repeat 1 (cold): 10.0 s, 7 Spark jobs, 2.1 s in parts that started "
                                                  "no Spark job, probes 0.5 s, 6 timed calls; state: step")


def test_the_table_has_a_row_per_part_and_a_column_per_repeat():
    cold, warm = _tree(12.0, 7), _tree(8.0, 7)
    warm.children["registry: tags"].children["tags.run"].children["tags.load_catalogue"] = tb.Node(
        "tags.load_catalogue", calls=1, seconds=0.25, counters={"jobs": 0})
    rows = tb.merged_rows([cold, warm])
    assert [(r["depth"], r["part"]) for r in rows] == [
        (0, "registry: tags"), (1, "tags.run"), (2, "tags.check_types"), (2, "incremental.features"),
        (3, "incremental.step"), (2, "[probe] plan gold.customer_tags"), (2, "tags.load_catalogue")]
    assert rows[3]["path"] == "registry: tags > tags.run > incremental.features"
    assert rows[-1]["repeats"][0] is None
    lines = tb.table(rows).splitlines()
    assert lines[0].split() == ["part", "calls", "s", "#1", "s", "#2", "self", "s", "#2", "jobs", "stages", "compile", "s"]
    cells = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert cells["tags.run"] == ["1", "12.00", "8.00", "1.25", "7", "-", "-"], "self: 8 - 2 - 4 - 0.5 - 0.25"
    assert cells["incremental.features"] == ["1", "6.00", "4.00", "3.90", "7", "-", "-"]
    assert cells["tags.load_catalogue"] == ["1", "-", "0.25", "0.25", "-/0", "-", "-"], "absent in the cold repeat"
    assert any(line.startswith("      incremental.step") for line in lines), "indented by depth"


def test_a_whole_run_with_the_stage_stubbed_writes_the_result_and_prints_the_table(tmp_path, monkeypatch, capsys):
    """main() end to end without Spark: the registry's tags stage replaced by one that calls two of the real
    stage's pure functions (wrapped for the run), a session with none of Spark's counters (reported missing)."""
    from jobs.orchestration import registry
    from jobs.platform import logs
    from jobs.platform import spark as spark_module

    root = tmp_path / "root"
    for table in ("silver/customer_day", "gold/customer_tags"):
        (root / "lake" / table / "_delta_log").mkdir(parents=True)
    monkeypatch.setenv("CPC_ROOT", "set by the run")  # put back after the test
    monkeypatch.setattr(logs, "setup", lambda *a, **k: None)
    session = types.SimpleNamespace(conf=FakeConf(), sparkContext=types.SimpleNamespace())
    monkeypatch.setattr(spark_module, "get_spark", lambda cfg=None, app_name="": session)
    seen = []

    def stage(day, cfg=None, **options):
        from jobs.stages import tags

        seen.append((day, cfg.paths.root, options))
        return tags.incremental.plan_of(tags.load_catalogue())

    monkeypatch.setitem(registry.STAGES, "tags", stage)
    log, out = tmp_path / "driver.log", tmp_path / "result.json"
    log.write_text("")
    assert tb.main(["--root", str(root), "--date", "2026-11-20", "--out", str(out), "--driver-log", str(log),
                    "--no-prepare"]) == 0
    assert seen == [(dt.date(2026, 11, 20), root, {"full": False})] * 2
    got = __import__("json").loads(out.read_text())
    assert (got["root"], got["date"], got["repeat"], len(got["repeats"])) == (str(root), "2026-11-20", 2, 2)
    assert len(got["commit"]) == 40 and isinstance(got["dirty"], bool)
    assert set(got["counters"]["missing"]) == {"jobs", "stages", "compile_seconds", "classes_compiled"}
    assert "error" in got["codegen_logging"] and "nothing was written" in got["driver_log"]["note"]
    assert [r["path"] for r in got["parts"]] == [
        "registry: tags", "registry: tags > tags.load_catalogue", "registry: tags > incremental.plan_of"]
    assert "prepare" not in got and [r["cold"] for r in got["repeats"]] == [True, False]
    printed = capsys.readouterr().out
    assert "  tags.load_catalogue" in printed and "repeat 2 (warm)" in printed and str(out) in printed


def test_a_whole_run_of_the_score_stage_stubbed_passes_no_option_and_prepares_nothing(tmp_path, monkeypatch, capsys):
    """main() with --stage score without Spark: the registry's score stage replaced by one that calls two of the
    real stage's functions through its namespace (wrapped for the run); no --full, no state, no preparation."""
    from jobs.orchestration import registry
    from jobs.platform import logs
    from jobs.platform import spark as spark_module

    root = tmp_path / "root"
    for table in tb.SETUPS["score"].tables:
        (root / "lake" / table.replace(".", "/") / "_delta_log").mkdir(parents=True)
    monkeypatch.setenv("CPC_ROOT", "set by the run")  # put back after the test
    monkeypatch.setattr(logs, "setup", lambda *a, **k: None)
    session = types.SimpleNamespace(conf=FakeConf(), sparkContext=types.SimpleNamespace())
    names = []
    monkeypatch.setattr(spark_module, "get_spark", lambda cfg=None, app_name="": names.append(app_name) or session)
    seen = []

    def stage(day, cfg=None, **options):
        from jobs.stages import cpc

        seen.append(options)
        cpc.load_conf()
        return cpc.business_fingerprint()

    monkeypatch.setitem(registry.STAGES, "score", stage)
    out = tmp_path / "result.json"
    assert tb.main(["--stage", "score", "--root", str(root), "--date", "2026-11-20", "--out", str(out), "--repeat", "1"]) == 0
    assert seen == [{}] and names == ["cpc-score-breakdown"]
    got = __import__("json").loads(out.read_text())
    assert (got["stage"], got["full"], "prepare" in got) == ("score", False, False)
    assert "state" not in got["repeats"][0] and got["repeats"][0]["cold"]
    paths = [r["path"] for r in got["parts"]]
    assert paths[:2] == ["registry: score", "registry: score > cpc.load_conf"]
    assert {"registry: score > cpc.load_conf > cpc.load_catalogue", "registry: score > cpc.business_fingerprint"} <= set(paths)
    printed = capsys.readouterr().out
    assert "score breakdown: repeat 1 (cold)" in printed and "state:" not in printed
