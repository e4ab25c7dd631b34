"""Where a nightly stage's time goes (issue 21, "fixed overhead cut"): each part of the tags stage
(``jobs/stages/tags``, the default), the score stage (``--stage score``: ``jobs/stages/cpc``) or another nightly
stage timed on an existing storage root, in wall seconds and in Spark jobs.

    .venv/bin/python bench/tags_breakdown.py --root var --date 2026-11-20 \\
        --driver-log var/tags_breakdown.log 2> var/tags_breakdown.log
    .venv/bin/python bench/tags_breakdown.py --stage score --root var --date 2026-11-20 \\
        --driver-log var/score_breakdown.log 2> var/score_breakdown.log

The stage runs as the nightly runs it (``jobs.orchestration.registry.STAGES[stage]``), in one session from
``jobs.platform.spark.get_spark`` with the settings of ``--root``, ``--repeat`` times (the first cold, the
others warm). The functions it calls are wrapped for the run (:data:`TARGETS`, per stage: module and class
attributes replaced by a timing wrapper and put back afterwards), so the breakdown follows the stage's own code
path and cannot drift from it. Each part reports its calls, wall seconds (with and without the parts inside it),
the Spark jobs and stages it started (the DAG scheduler's counters before and after) and the seconds Spark spent
compiling generated code inside it.

The stages (``--stage``, :data:`TARGETS`): ``tags`` and ``score`` in detail (every function their ``run`` calls,
and those inside that start Spark jobs: for score the inputs it reads, the candidates, the placements, the
exploration priority, the assignment's passes, repair and fill); ``conform``, ``segments``, ``propensity``,
``export`` and ``evaluate`` cheaply (the registry's call and the functions it calls). Every stage also times the
lake's reads, versions and writes by table and the DataFrame calls that start jobs, plan or analyse
(:data:`COMMON`). Not ingest: it runs its file kinds on worker threads, and the tree of timed parts is one thread's.

Also:

- a plan probe before each Delta write (``lake.replace``, ``lake.append``): the frame about to be written is
  optimised and planned once more, apart, with adaptive execution off so that the physical plan shows which
  operators whole-stage code generation covers (an operator with more than ``spark.sql.codegen.maxFields``
  input or output columns is left out, silently). ``--codegen-stats`` also compiles each whole-stage subtree and
  records its largest generated method: HotSpot does not JIT-compile a method over 8,000 bytes of bytecode,
  and Spark gives up whole-stage code generation for a subtree over ``spark.sql.codegen.hugeMethodLimit``
  (65,535 by default; SPARK-21603). Its compilations fill Spark's code cache, so the writes that follow compile
  less than they would: take the timings from a run without it. Probes are reported apart (``[probe]``) and
  cost time of their own; ``--no-plan-probe`` leaves them out. The frame's analysis is not probed: Spark
  analyses a frame as it is built (the ``DataFrame.select``/``selectExpr`` rows).
- ``--driver-log``: the file the driver's log goes to (Spark logs to standard error: redirect it there). The
  code generation loggers are raised to INFO for the run and the file is searched afterwards for the messages
  of :data:`LOG_PATTERNS`, in total and per part.

The stage's output for ``--date`` is recomputed in place (each stage replaces its own partitions; export
republishes the day's lists and appends its audit rows, as a rerun does). The root must hold the tables the stage
reads (:data:`SETUPS`: for score, the day's ``gold.customer_tags`` and ``gold.customer_segment``, and
``bronze.orders`` and ``bronze.contacts``). Tags only: a nightly steps the incremental tag state from the day
before; when the root has no valid state of the day before (after ``make run`` there is only the run date's, a
bootstrap), it is built first, once, outside the timed repeats (``prepare`` in the result; ``--no-prepare``
times whatever the stage does), and ``--full`` breaks down ``cpc tags --full``; the other stages are called
without options and prepare nothing. Writes ``--out`` (default ``bench/results/<stage>_breakdown.json``) after
every repeat, and prints a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.nightly_bench import save  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "tags_breakdown.json"  # another stage's: <stage>_breakdown.json
JIT_LIMIT = 8000  # HotSpot's HugeMethodLimit: a longer method is never JIT-compiled (-XX:+DontCompileHugeMethods)


# ---------------------------------------------------------------------------------------------------------
# What is timed: the stage's functions, the lake's reads and writes, the DataFrame calls that run or plan
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A function to time for the run: ``owner`` is a module (``a.b``) or a class (``a.b:Class``). A name
    imported into several modules is one target per module that calls it."""

    owner: str
    attr: str
    label: str = ""  # default: the owner's last name and the attribute, e.g. incremental.write_state
    by_table: bool = False  # the lake's functions: the table (their third argument) added to the label
    by_caller: bool = False  # eager calls made in several places (checkpoints): the calling line added

    def resolve(self):
        module, _, cls = self.owner.partition(":")
        found = importlib.import_module(module)
        return getattr(found, cls) if cls else found

    def table(self, args: tuple, kwargs: dict) -> str:
        return str(kwargs.get("table", args[2] if len(args) > 2 else "?"))

    def name(self, args: tuple, kwargs: dict, caller: str = "") -> str:
        base = self.label or f"{self.owner.rpartition(':')[2].rpartition('.')[2]}.{self.attr}"
        if self.by_caller and caller:
            base = f"{base} @ {caller}"
        return f"{base} {self.table(args, kwargs)}" if self.by_table else base


def caller_of(frame) -> str:
    """``folder/file.py:line`` of a frame: where a ``by_caller`` target was called from."""
    path = Path(frame.f_code.co_filename)
    return f"{path.parent.name}/{path.name}:{frame.f_lineno}"


# Timed in every stage: each Delta table opened, versioned or written (jobs/platform/lake.py), and the DataFrame
# calls that start Spark jobs (count, collect: first, head and take end in collect; localCheckpoint and checkpoint,
# eager), plan (cache) or analyse
COMMON: tuple[Target, ...] = (
    *(Target("jobs.platform.lake", a, by_table=True) for a in ("exists", "read", "version", "replace", "last_commit_rows",
                                                               "last_partition_before", "append")),
    *(Target("pyspark.sql.classic.dataframe:DataFrame", a) for a in ("count", "collect", "cache", "select", "selectExpr")),
    # each checkpoint is its own part, named by the line that calls it (a stage checkpoints in several places)
    *(Target("pyspark.sql.classic.dataframe:DataFrame", a, by_caller=True) for a in ("localCheckpoint", "checkpoint")),
    Target("jobs.platform.lake", "days_rewritten"),  # a Delta log read: the tag state's start, evaluate's plan
    Target("pyspark.sql.group:GroupedData", "agg"),
    Target("pyspark.sql.catalog:Catalog", "clearCache"),
)

TAGS = "jobs.stages.tags"
TAGS_TARGETS: tuple[Target, ...] = (
    # jobs/stages/tags/__init__.py: run and what it calls, in its order
    *(Target(TAGS, a) for a in ("run", "load_catalogue", "types_checked", "check_types", "base_frame", "apply_tags",
                                "previous_snapshot", "carry_forward", "catalogue_unchanged", "catalogue_frame")),
    # incremental.py: the window features from the state, stepped (or bootstrapped) and written on the way
    *(Target(f"{TAGS}.incremental", a) for a in ("features", "plan_of", "advance", "start_state", "logged_states",
                                                 "read_state", "write_state", "daily_delta",
                                                 "step", "state_full", "features_from_state")),
    Target(f"{TAGS}.incremental", "window_features", "engine.window_features"),  # `cpc tags --full`
    # engine.py: the inputs as of the day, read by base_frame
    *(Target(f"{TAGS}.engine", a) for a in ("profile_asof", "state_asof", "window_features")),
    # stats.py: the day's tag statistics
    *(Target(f"{TAGS}.stats", a) for a in ("run", "stats", "compare")),
)

CPC = "jobs.stages.cpc"
SCORE_TARGETS: tuple[Target, ...] = (
    # jobs/stages/cpc/__init__.py: run and what it calls, in its order; the functions it imports from inputs.py
    # and decide.py are looked up in its namespace, so they are wrapped there
    *(Target(CPC, a) for a in ("run", "load_conf", "load_catalogue", "product_channel_table", "input_versions")),
    Target("models.uplift", "load_settings", "models.uplift.load_settings"),  # in load_conf and run
    *(Target(CPC, a) for a in ("model_versions", "closure_harm", "deliveries_fingerprint", "business_fingerprint",
                               "decision_run_id", "inputs", "acceptance_scales", "uplift_ranking", "ranking_off", "combos",
                               "candidates", "day_customers", "ineligible", "past_eligibility", "decide", "decisions", "offers",
                               "funnel_rows")),
    Target(f"{CPC}.campaigns", "config_fingerprint"),  # ops.cpc_runs' row
    # the summary: written_counts only builds the counts' columns (they are counted inside the write of
    # gold.cpc_decisions); observed waits for them (or reads the partition back after its timeout)
    *(Target(CPC, a) for a in ("written_counts", "observed", "read_back_counts", "_written")),
    Target("pyspark.sql.session:SparkSession", "createDataFrame"),  # gold.fit_product_channel, ops.cpc_runs, combos
    # inputs.py: what inputs, acceptance_scales and uplift_ranking read
    *(Target(f"{CPC}.inputs", a) for a in ("history", "channel_learning", "trials", "uplift_scores", "uplift_status",
                                           "measured_incrementality")),
    Target("jobs.stages.propensity", "wide"),  # the propensity deciles, read by inputs
    # decide.py: the candidates' per-customer frame, fits and exploration; decide's exploration priority and
    # assignment (conf/policy.yaml assignment: priced, or deferred_acceptance: decide.assign); what decisions adds
    *(Target(f"{CPC}.decide", a) for a in ("_per_customer", "_with_fits", "_with_exploration", "_with_priority",
                                           "explorer_priority", "assign", "not_chosen", "active_eligible_pairs")),
    Target(f"{CPC}.decide", "assign_priced", "assign.assign_priced"),
    # assign.py: the priced assignment's table of customers, its tiers, passes (evaluate: one action each),
    # repair and fill (localCheckpoint), and counts
    *(Target(f"{CPC}.assign", a) for a in ("pruned", "customers_table", "tier", "tier_prices", "evaluate", "repair",
                                           "fill", "counts")),
)

# The other nightly stages, cheaply: the registry's call, the functions it calls, and COMMON. Not ingest: it runs
# its file kinds on worker threads (the recorder's tree is one thread's).
OTHER_TARGETS: dict[str, tuple[Target, ...]] = {
    "conform": tuple(Target("jobs.stages.conform", a) for a in ("run", "customer_day")),
    "segments": tuple(Target("jobs.stages.segments", a) for a in ("run", "rules", "segment")),
    "propensity": (Target("jobs.stages.propensity", "score"),
                   Target("models.propensity", "current", "models.propensity.current"),
                   Target("jobs.stages.uplift", "score"), Target("jobs.stages.uplift", "_payload"),
                   Target("models.uplift", "current", "models.uplift.current")),
    "export": (*(Target("jobs.stages.export", a) for a in ("run", "decision_run", "decided_counts", "contactable",
                                                           "list_stats", "_publish", "write_list", "write_day_manifest",
                                                           "audit_rows")),
               Target("jobs.stages.export", "load_conf", "cpc.load_conf"),
               Target("jobs.stages.export", "profile_asof", "engine.profile_asof"),
               Target("jobs.stages.export", "day_customers", "inputs.day_customers"),
               Target("jobs.stages.export", "close_day", "ledger.close_day")),
    "evaluate": (*(Target("jobs.stages.evaluate", a) for a in ("run", "settings", "rebuild_outcomes", "outcomes",
                                                               "evaluation", "trial_funnel", "headline")),
                 # rebuild.py: which outcome dates a night rebuilds (choose) and what it logs (record)
                 *(Target("jobs.stages.evaluate.rebuild", a) for a in ("choose", "previous", "versions", "table_ids",
                                                                       "changes", "touched", "record")),
                 Target("jobs.stages.evaluate.report", "write")),
}

# Per stage (jobs.orchestration.registry.STAGES' names, in the nightly's order): every target of its run
_OWN = {"tags": TAGS_TARGETS, "score": SCORE_TARGETS, **OTHER_TARGETS}
TARGETS: dict[str, tuple[Target, ...]] = {
    name: (*_OWN[name], *COMMON) for name in ("conform", "tags", "segments", "propensity", "score", "export", "evaluate")}

# Substrings of the driver's log: whole-stage codegen given up, methods too long for the JIT, compile failures.
LOG_PATTERNS: dict[str, str] = {
    "codegen_too_long": "Found too long generated codes",  # WholeStageCodegenExec, over hugeMethodLimit (INFO)
    "huge_method_limit": "hugeMethodLimit",  # named in the message above
    "codegen_disabled": "Whole-stage codegen disabled",  # WholeStageCodegenExec, a compile error (WARN)
    "method_too_long_for_jit": "Generated method too long to be JIT compiled",  # CodeGenerator (INFO)
    "compile_failed": "Failed to compile the generated Java code",  # CodeGenerator (ERROR)
    "over_64kb": "grows beyond 64 KB",  # Janino's error for a method over the JVM's limit
    "code_generated": "Code generated in",  # CodeGenerator (INFO): one compiled class
}
CODEGEN_LOGGERS = ("org.apache.spark.sql.execution.WholeStageCodegenExec",
                   "org.apache.spark.sql.catalyst.expressions.codegen.CodeGenerator")
CODEGEN_CONF = ("spark.sql.codegen.wholeStage", "spark.sql.codegen.hugeMethodLimit", "spark.sql.codegen.maxFields",
                "spark.sql.codegen.methodSplitThreshold", "spark.sql.codegen.fallback", "spark.sql.adaptive.enabled",
                "spark.sql.shuffle.partitions")


# ---------------------------------------------------------------------------------------------------------
# The recorder: a tree of parts, each with calls, seconds and counter deltas
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Node:
    label: str
    probe: bool = False
    calls: int = 0
    seconds: float = 0.0
    counters: dict[str, float] = field(default_factory=dict)  # deltas over the part, its inner parts included
    spans: list[tuple[int, int]] = field(default_factory=list)  # byte ranges of the driver log written inside
    log: dict[str, int] = field(default_factory=dict)  # LOG_PATTERNS found in those ranges (filled afterwards)
    children: dict[str, Node] = field(default_factory=dict)

    @property
    def self_seconds(self) -> float:
        return self.seconds - sum(c.seconds for c in self.children.values())

    def walk(self) -> Iterator[Node]:
        yield self
        for c in self.children.values():
            yield from c.walk()

    def summary(self) -> dict:
        counters = {k: (round(v, 3) if k == "compile_seconds" else int(v)) for k, v in self.counters.items()}
        return {"calls": self.calls, "seconds": round(self.seconds, 3), "self_seconds": round(self.self_seconds, 3),
                **counters, **({"log": self.log} if self.log else {})}


_ABSENT = object()


class Recorder:
    """Parts timed as a tree: a wrapped function called inside another is a part inside it; calls with the
    same label in the same place add up. ``counters`` returns monotonic readings (Spark jobs, ...) whose
    differences each part records; ``log_size`` the driver log's size in bytes (or None)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter, counters: Callable[[], dict] = dict,
                 log_size: Callable[[], int | None] = lambda: None) -> None:
        self.clock, self.counters, self.log_size = clock, counters, log_size
        self.root = Node("")
        self._stack = [self.root]

    @contextmanager
    def part(self, label: str, probe: bool = False) -> Iterator[Node]:
        node = self._stack[-1].children.setdefault(label, Node(label, probe=probe))
        before, log0 = self.counters(), self.log_size()
        start = self.clock()
        self._stack.append(node)
        try:
            yield node
        finally:
            self._stack.pop()
            node.calls += 1
            node.seconds += self.clock() - start
            for k, v in self.counters().items():
                node.counters[k] = node.counters.get(k, 0) + v - before.get(k, v)
            log1 = self.log_size()
            if log0 is not None and log1 is not None:
                node.spans.append((log0, log1))

    def wrap(self, fn: Callable, target: Target, before: Callable | None = None) -> Callable:
        """``fn`` timed as a part named by ``target``; ``before(target, args, kwargs)`` runs first, outside it."""
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if before is not None:
                before(target, args, kwargs)
            caller = caller_of(sys._getframe(1)) if target.by_caller else ""
            with self.part(target.name(args, kwargs, caller)):
                return fn(*args, **kwargs)
        return timed

    @contextmanager
    def patched(self, targets: tuple[Target, ...], before: Callable | None = None) -> Iterator[Recorder]:
        """Every target replaced by its timed wrapper while inside; the originals put back on the way out
        (an error included). A target that is not a function of its owner fails before anything runs."""
        done: list[tuple[object, str, object]] = []
        try:
            for t in targets:
                owner = t.resolve()
                fn = getattr(owner, t.attr, None)
                if not callable(fn):
                    raise AttributeError(f"{t.owner}.{t.attr} is not a function any more: update TARGETS in {__file__}")
                done.append((owner, t.attr, vars(owner).get(t.attr, _ABSENT)))
                setattr(owner, t.attr, self.wrap(fn, t, before))
            yield self
        finally:
            for owner, attr, own in reversed(done):
                if own is _ABSENT:  # inherited by the class: drop the wrapper, the parent's shows through again
                    delattr(owner, attr)
                else:
                    setattr(owner, attr, own)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"


class Counters:
    """Named readings of monotonic counters, each a callable with an optional fallback. A reading that fails
    when first taken (both ways) is left out, its error kept in ``missing``; ``used`` says which way each is read."""

    def __init__(self, sources: dict[str, Callable[[], float]],
                 fallbacks: dict[str, Callable[[], float]] | None = None) -> None:
        self.sources: dict[str, Callable[[], float]] = {}
        self.missing: dict[str, str] = {}
        self.used: dict[str, str] = {}
        for name, fn in sources.items():
            errors = []
            for way, candidate in (("primary", fn), ("fallback", (fallbacks or {}).get(name))):
                if candidate is None:
                    continue
                try:
                    float(candidate())
                except Exception as exc:  # noqa: BLE001 - a counter this Spark does not have: reported, not fatal
                    errors.append(f"{way}: {first_line(exc)}")
                    continue
                self.sources[name], self.used[name] = candidate, way
                break
            if name not in self.sources:
                self.missing[name] = "; ".join(errors)

    def __call__(self) -> dict[str, float]:
        return {name: float(fn()) for name, fn in self.sources.items()}


def spark_counters(spark) -> Counters:
    """Spark jobs and stages started (the DAG scheduler's id counters: every job, whatever thread or job group
    started it; the status tracker's highest job id when they cannot be read), seconds spent compiling
    generated code and classes compiled (Spark's code generation metrics; in local mode the executors share
    the driver's JVM, so their compilations count too)."""
    sc = spark.sparkContext

    @functools.cache
    def dag():
        return sc._jsc.sc().dagScheduler()

    @functools.cache
    def codegen():
        return sc._jvm.org.apache.spark.sql.catalyst.expressions.codegen.CodeGenerator

    @functools.cache
    def compilations():
        return sc._jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME()

    def highest_job_id() -> int:
        tracker = sc.statusTracker()
        return 1 + max([*tracker.getJobIdsForGroup(None), *tracker.getActiveJobsIds()], default=-1)

    return Counters({"jobs": lambda: dag().numTotalJobs(), "stages": lambda: dag().nextStageId().get(),
                     "compile_seconds": lambda: codegen().compileTime() / 1e9,  # nanoseconds in Spark
                     "classes_compiled": lambda: compilations().getCount()},
                    {"jobs": highest_job_id})


# ---------------------------------------------------------------------------------------------------------
# Plans and generated code
# ---------------------------------------------------------------------------------------------------------
_OPERATOR = re.compile(r"^[\s:|+\-]*(\*\((\d+)\)\s+)?([A-Z][A-Za-z]*)")
# Operators never inside a whole-stage codegen stage (no code generation of their own, or not an operator
# that runs rows): seeing them outside says nothing.
NEVER_INSIDE = frozenset({"AdaptiveSparkPlan", "Exchange", "BroadcastExchange", "ReusedExchange", "ShuffleQueryStage",
                          "BroadcastQueryStage", "AQEShuffleRead", "FileScan", "Scan", "LocalTableScan",
                          "InMemoryTableScan", "InMemoryRelation", "CollectLimit", "TakeOrderedAndProject",
                          "WriteFiles", "Execute", "Subquery", "ReusedSubquery", "Window", "ObjectHashAggregate"})


def codegen_coverage(plan_text: str) -> dict:
    """Operators of a physical plan's text inside a whole-stage codegen stage (``*(n) Name``) and outside it;
    ``outside_candidates``: those outside of a kind that can be inside, left out because of too many columns
    (``spark.sql.codegen.maxFields``) or an expression without code generation."""
    inside, outside, stages = Counter(), Counter(), set()
    for line in plan_text.splitlines():
        m = _OPERATOR.match(line)
        if not m:
            continue
        if m.group(1):
            inside[m.group(3)] += 1
            stages.add(m.group(2))
        else:
            outside[m.group(3)] += 1
    return {"codegen_stages": len(stages), "in_codegen": dict(inside), "outside_codegen": dict(outside),
            "outside_candidates": {k: v for k, v in outside.items() if k not in NEVER_INSIDE}}


def compiled_sizes(spark, plan, huge_limit: int) -> dict:
    """Compile every whole-stage subtree of ``plan`` (Spark's ``debugCodegen``) and report each one's largest
    generated method in bytes of bytecode, the largest ten first."""
    seq = spark.sparkContext._jvm.org.apache.spark.sql.execution.debug.package.codegenStringSeq(plan)
    sizes = []
    for i in range(seq.length()):
        item = seq.apply(i)
        stats = item._3()
        sizes.append({"subtree": " | ".join(str(item._1()).splitlines()[:2])[:300],
                      "max_method_bytes": int(stats.maxMethodCodeSize()), "inner_classes": int(stats.numInnerClasses())})
    sizes.sort(key=lambda s: s["max_method_bytes"], reverse=True)
    return {"subtrees": len(sizes), "over_jit_limit": sum(s["max_method_bytes"] > JIT_LIMIT for s in sizes),
            "over_huge_method_limit": sum(s["max_method_bytes"] > huge_limit for s in sizes), "largest": sizes[:10]}


def plan_probe(spark, df, codegen_stats: bool = False, clock: Callable[[], float] = time.perf_counter) -> dict:
    """Optimise and plan ``df`` once more (a fresh query execution of the same plan) with adaptive execution
    off, timing each step; the physical plan's codegen coverage; with ``codegen_stats`` its compiled sizes.
    Adaptive execution is put back as it was, whatever happens; an error is recorded, not raised."""
    key = "spark.sql.adaptive.enabled"
    aqe = spark.conf.get(key)
    out: dict = {}
    spark.conf.set(key, "false")
    try:
        out["columns"] = len(df.columns)
        qe = df._jdf.alias("probe").queryExecution()
        t0 = clock()
        qe.optimizedPlan()
        t1 = clock()
        qe.sparkPlan()
        t2 = clock()
        plan = qe.executedPlan()
        t3 = clock()
        out.update(optimise_seconds=round(t1 - t0, 3), plan_seconds=round(t2 - t1, 3), prepare_seconds=round(t3 - t2, 3))
        out.update(codegen_coverage(str(plan.toString())))
        if codegen_stats:
            out["codegen"] = compiled_sizes(spark, plan, int(spark.conf.get("spark.sql.codegen.hugeMethodLimit")))
    except Exception as exc:  # noqa: BLE001 - a probe must not stop the stage it measures
        out["error"] = first_line(exc)
    finally:
        spark.conf.set(key, aqe)
    return out


def probe_hook(rec: Recorder, spark, plans: list[dict], repeat: int, codegen_stats: bool) -> Callable:
    """A ``before`` for :meth:`Recorder.patched`: each Delta write's frame (``lake.replace``, ``lake.append``)
    probed (:func:`plan_probe`) as a ``[probe]`` part just before the write's own part."""
    def before(target: Target, args: tuple, kwargs: dict) -> None:
        if target.owner != "jobs.platform.lake" or target.attr not in ("replace", "append"):
            return
        table = target.table(args, kwargs)
        with rec.part(f"[probe] plan {table}", probe=True):
            plans.append({"repeat": repeat, "table": table,
                          **plan_probe(spark, kwargs.get("df", args[0] if args else None), codegen_stats)})
    return before


# ---------------------------------------------------------------------------------------------------------
# The driver's log
# ---------------------------------------------------------------------------------------------------------
def grep_log(text: str) -> dict:
    """Occurrences of each of :data:`LOG_PATTERNS`, and the milliseconds of the "Code generated in" lines."""
    counts = {name: text.count(pattern) for name, pattern in LOG_PATTERNS.items()}
    ms = sum(float(x) for x in re.findall(r"Code generated in ([0-9.]+) ms", text))
    return {"counts": counts, "code_generated_ms": round(ms, 1)}


def log_size(path: Path | None) -> Callable[[], int | None]:
    return lambda: path.stat().st_size if path is not None and path.exists() else None


def attribute_log(data: bytes, trees: list[Node]) -> None:
    """Each part's ``log``: the patterns found in the bytes the driver logged while it ran (inner parts
    included); only the patterns found."""
    for tree in trees:
        for node in tree.walk():
            if node.spans:
                text = b"".join(data[a:b] for a, b in node.spans).decode("utf-8", "replace")
                node.log = {k: v for k, v in grep_log(text)["counts"].items() if v}


def driver_log(path: Path | None, start: int | None, trees: list[Node]) -> dict:
    """The log written since ``start`` (its size when the run began) searched in total and per part."""
    if path is None:
        return {"path": None, "note": "not given (--driver-log)"}
    if not path.exists():
        return {"path": str(path), "note": "not found: was standard error redirected to it?"}
    data = path.read_bytes()
    attribute_log(data, trees)
    out = {"path": str(path), "bytes": len(data) - (start or 0), **grep_log(data[start or 0:].decode("utf-8", "replace"))}
    if not out["bytes"]:
        out["note"] = "nothing was written to it during the run: was standard error redirected to it?"
    return out


def raise_codegen_logging(spark) -> dict:
    """The code generation loggers at INFO (``get_spark`` leaves every logger at ERROR): their messages about
    long methods and disabled whole-stage codegen are INFO. A failure is recorded: the run goes on."""
    try:
        jvm = spark.sparkContext._jvm
        info = jvm.org.apache.logging.log4j.Level.toLevel("INFO")
        for name in CODEGEN_LOGGERS:
            jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(name, info)
    except Exception as exc:  # noqa: BLE001 - the log search then finds less; the timings stand
        return {"loggers": [], "error": first_line(exc)}
    return {"loggers": list(CODEGEN_LOGGERS)}


# ---------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------
def merged_rows(trees: list[Node]) -> list[dict]:
    """One row per part over the repeats, in call order (depth first): its path, depth and each repeat's
    :meth:`Node.summary` (None in a repeat where it did not run)."""
    rows: list[dict] = []

    def visit(nodes: list[Node | None], depth: int, path: tuple[str, ...]) -> None:
        labels: list[str] = []
        for n in nodes:
            labels += [label for label in (n.children if n else {}) if label not in labels]
        for label in labels:
            kids = [n.children.get(label) if n else None for n in nodes]
            rows.append({"part": label, "path": " > ".join((*path, label)), "depth": depth,
                         "repeats": [k.summary() if k else None for k in kids]})
            visit(kids, depth + 1, (*path, label))

    visit(list(trees), 0, ())
    return rows


def _per_repeat(values: list, fmt: str = "{:d}") -> str:
    """One figure when every repeat agrees, else each repeat's joined by '/'; '-' where absent."""
    cells = ["-" if v is None else fmt.format(v) for v in values]
    return cells[0] if len(set(cells)) == 1 else "/".join(cells)


def plain(headers: list[str], rows: list[list[str]], left: tuple[int, ...] = (0,)) -> str:
    """A plain text table: the columns ``left`` left-aligned (leading spaces kept), the others right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: list) -> str:
        return "  ".join(str(c).ljust(w) if j in left else str(c).rjust(w)
                         for j, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *[line(r) for r in rows]])


def table(rows: list[dict]) -> str:
    """The table of parts: part (indented by depth), calls, seconds of each repeat, the last repeat's seconds
    outside inner parts, and Spark jobs, stages and compile seconds (per repeat when they differ)."""
    n = max((len(r["repeats"]) for r in rows), default=1)
    headers = ["part", "calls", *[f"s #{i}" for i in range(1, n + 1)], f"self s #{n}", "jobs", "stages", "compile s"]
    return plain(headers, [_row(r) for r in rows])


def _row(r: dict) -> list[str]:
    reps = r["repeats"]
    last = next((x for x in reversed(reps) if x), None)

    def per_repeat(key: str, fmt: str = "{:d}") -> str:
        return _per_repeat([x.get(key) if x else None for x in reps], fmt)

    return ["  " * r["depth"] + r["part"], str(last["calls"]) if last else "-",
            *["-" if x is None else f"{x['seconds']:.2f}" for x in reps],
            f"{last['self_seconds']:.2f}" if last else "-",
            per_repeat("jobs"), per_repeat("stages"), per_repeat("compile_seconds", "{:.2f}")]


def state_method(tree: Node) -> str:
    """How the tags stage got the state of its date: from the history (a bootstrap, or ``--full``), or stepped."""
    calls = Counter()
    for node in tree.walk():
        calls[node.label] += node.calls
    if calls["incremental.state_full"]:
        return "from the history"
    steps = calls["incremental.step"]
    return "none" if not steps else ("step" if steps == 1 else f"rebuilt forward over {steps} days")


def totals(tree: Node, state: Callable[[Node], str] | None = state_method) -> dict:
    """A repeat's totals: seconds, jobs, stages and compile seconds of the stage, the probes' share of them
    (outermost probe parts), and the seconds of the outermost parts that started no Spark job (driver work:
    building, analysing and planning frames, reading Delta logs, calls between Python and the JVM); with
    ``state`` (the tags stage's :func:`state_method`), how the stage got its state."""
    top = list(tree.children.values())
    measured = top[0].counters if top else {}
    probes = _outermost(tree, lambda n: n.probe)
    idle = _outermost(tree, lambda n: not n.probe and n.counters.get("jobs") == 0)
    return {"seconds": round(sum(n.seconds for n in top), 3),
            **{k: _total(top, k) if k in measured else None for k in ("jobs", "stages", "compile_seconds")},
            "probe_seconds": round(sum(n.seconds for n in probes), 3),
            "no_job_seconds": round(sum(n.seconds for n in idle), 3) if "jobs" in measured else None,
            "timed_calls": sum(n.calls for n in tree.walk()), **({"state": state(tree)} if state else {})}


def _total(nodes: list[Node], key: str) -> float | int:
    value = sum(n.counters.get(key, 0) for n in nodes)
    return round(value, 3) if key == "compile_seconds" else int(value)


def _outermost(tree: Node, keep: Callable[[Node], bool]) -> list[Node]:
    out, todo = [], list(tree.children.values())
    while todo:
        node = todo.pop()
        if keep(node):
            out.append(node)
        elif not node.probe:
            todo += node.children.values()
    return out


def summary_line(i: int, t: dict, cold: bool) -> str:
    """One repeat's totals in a sentence (a figure whose counter could not be read is left out)."""
    parts = [f"{t['seconds']:.1f} s"]
    if t.get("jobs") is not None:
        parts.append(f"{t['jobs']:.0f} Spark jobs" + (f", {t['stages']:.0f} stages" if t.get("stages") is not None else ""))
    if t.get("compile_seconds") is not None:
        parts.append(f"{t['compile_seconds']:.1f} s compiling generated code")
    if t.get("no_job_seconds") is not None:
        parts.append(f"{t['no_job_seconds']:.1f} s in parts that started no Spark job")
    parts.append(f"probes {t['probe_seconds']:.1f} s, {t['timed_calls']} timed calls")
    state = f"; state: {t['state']}" if "state" in t else ""
    return f"repeat {i} ({'cold' if cold else 'warm'}): {', '.join(parts)}{state}"


def plans_table(plans: list[dict]) -> str:
    """The plan probes: each written frame's width, optimisation and planning seconds, whole-stage codegen
    stages, operators left outside them that could be inside, and (``--codegen-stats``) its largest method."""
    rows = [[str(p["repeat"]), p["table"], str(p.get("columns", "-")), str(p.get("optimise_seconds", "-")),
             str(p.get("plan_seconds", "-")), str(p.get("codegen_stages", "-")),
             str(max((s["max_method_bytes"] for s in p["codegen"]["largest"]), default="-")) if p.get("codegen") else "-",
             ", ".join(f"{k} {v}" for k, v in p.get("outside_candidates", {}).items()) or p.get("error", "")]
            for p in plans]
    return plain(["repeat", "written table", "columns", "optimise s", "plan s", "codegen stages", "largest method B",
                  "outside codegen, could be in"], rows, left=(0, 1, 7))


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------
def _repeat_count(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return n


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=list(TARGETS), default="tags",
                    help="the nightly stage broken down (jobs.orchestration.registry.STAGES; default: tags)")
    ap.add_argument("--root", type=Path, default=None,
                    help="a storage root that has been through a nightly (default: $CPC_ROOT or conf/env's, var/)")
    ap.add_argument("--date", required=True, type=dt.date.fromisoformat,
                    help="the run date; the stage's output for it is recomputed in place (each stage is idempotent per date)")
    ap.add_argument("--repeat", type=_repeat_count, default=2, help="runs of the stage in one session (the first cold)")
    ap.add_argument("--out", type=Path, default=None,
                    help="the result (JSON; default: bench/results/<stage>_breakdown.json)")
    ap.add_argument("--driver-log", type=Path, default=None,
                    help="the file the driver's standard error goes to (redirect it: 2> FILE), searched afterwards")
    ap.add_argument("--full", action="store_true", help="break down `cpc tags --full` (features from the history; tags only)")
    ap.add_argument("--no-prepare", dest="prepare", action="store_false",
                    help="tags: do not build the state of the day before when missing (the stage then bootstraps)")
    ap.add_argument("--no-plan-probe", dest="plan_probe", action="store_false", help="no plan probe before each write")
    ap.add_argument("--codegen-stats", action="store_true",
                    help="the probes also compile each whole-stage subtree (its largest method); skews compile times")
    args = ap.parse_args(argv)
    if args.full and not SETUPS[args.stage].full:
        ap.error(f"--full: the {args.stage} stage has no full mode (only tags has)")
    if args.out is None:
        args.out = RESULT if args.stage == "tags" else RESULT.with_name(f"{args.stage}_breakdown.json")
    return args


def prepare_state(spark, paths, day: dt.date) -> dict:
    """The state of the day before ``day``, built when the tags stage would not step from it (what a nightly
    does); untimed by the breakdown."""
    from jobs.platform import lake
    from jobs.stages.tags import incremental, load_catalogue

    plan = incremental.plan_of(load_catalogue())
    version = lake.version(spark, paths, incremental.SILVER)
    before = day - dt.timedelta(days=1)
    start = incremental.start_state(spark, paths, day, plan, incremental.state_days(), version)
    out = {"stepped_from": start.isoformat() if start else None, "built": None, "seconds": 0.0}
    if start != before:
        t0 = time.perf_counter()
        incremental.advance(spark, paths, before, plan, lake.read(spark, paths, incremental.SILVER, version), version)
        out.update(built=before.isoformat(), seconds=round(time.perf_counter() - t0, 1))
    return out


def check_root(paths, tables: tuple[str, ...] = ("silver.customer_day", "gold.customer_tags")) -> None:
    missing = [t for t in tables if not (Path(paths.table(t)) / "_delta_log").is_dir()]
    if missing:
        raise SystemExit(f"{paths.root}: no {', '.join(missing)}: run a nightly there first (make run)")


@dataclass(frozen=True)
class Setup:
    """What the breakdown of a stage needs besides its :data:`TARGETS`: the tables the root must hold (what the
    stage reads without looking first), a preparation run once before the repeats, untimed (``prepare(spark,
    paths, day) -> dict``, in the result), how a repeat's tree says the way the stage got its state (``state(tree)
    -> str``, in the totals), and whether the stage takes ``--full`` (the registry passes it as ``full=``)."""

    tables: tuple[str, ...]
    prepare: Callable[..., dict] | None = None
    state: Callable[[Node], str] | None = None
    full: bool = False


SETUPS: dict[str, Setup] = {
    "conform": Setup(tuple(f"bronze.{k}" for k in ("usage", "billing", "contacts", "complaints", "orders", "devices"))),
    "tags": Setup(("silver.customer_day", "gold.customer_tags"), prepare_state, state_method, full=True),
    "segments": Setup(("gold.customer_tags",)),
    "propensity": Setup(("gold.customer_tags",)),
    # inputs: the day's tags and segments; product_channel_table, history and trials: orders and contacts
    "score": Setup(("gold.customer_tags", "gold.customer_segment", "bronze.orders", "bronze.contacts")),
    "export": Setup(("gold.cpc_decisions", "gold.customer_tags", "gold.customer_segment", "bronze.crm_profile",
                     "ops.cpc_runs", "ops.ingest_ledger")),
    "evaluate": Setup(("gold.cpc_decisions", "gold.customer_tags", "bronze.orders")),
}


def run_repeat(spark, cfg, args, counters: Counters, i: int, trees: list[Node], plans: list[dict]) -> None:
    """One run of the stage through the registry, every target of it timed; its tree is in ``trees`` from the
    start, so a run that fails keeps what it measured. Only a stage that takes ``--full`` is given it."""
    from jobs.orchestration.registry import STAGES

    rec = Recorder(counters=counters, log_size=log_size(args.driver_log))
    trees.append(rec.root)
    before = probe_hook(rec, spark, plans, i, args.codegen_stats) if args.plan_probe else None
    options = {"full": args.full} if SETUPS[args.stage].full else {}
    with rec.patched(TARGETS[args.stage], before), rec.part(f"registry: {args.stage}"):
        STAGES[args.stage](args.date, cfg, **options)


def build(result: dict, trees: list[Node], plans: list[dict], cold_first: bool,
          state: Callable[[Node], str] | None = state_method) -> dict:
    result["repeats"] = [{"repeat": i, "cold": i == 1 and cold_first, **totals(t, state)}
                         for i, t in enumerate(trees, start=1)]
    result["parts"], result["plans"] = merged_rows(trees), plans
    return result


def start(args: argparse.Namespace, argv: list[str]) -> tuple:
    """Settings for the root, the session (timed), and the result's header."""
    if args.root is not None:
        os.environ["CPC_ROOT"] = str(args.root.resolve())  # before settings() reads it
    os.environ.setdefault("CPC_ENV", "local")
    from bench.nightly_bench import stamp
    from jobs.platform import logs
    from jobs.platform.config import settings
    from jobs.platform.provenance import git_state
    from jobs.platform.spark import get_spark

    logs.setup()
    code, cfg = git_state(), settings()  # the commit at the start: the code measured
    check_root(cfg.paths, SETUPS[args.stage].tables)
    log_start = log_size(args.driver_log)()
    t0 = time.perf_counter()
    spark = get_spark(cfg, app_name=f"cpc-{args.stage}-breakdown")
    result = {"stage": args.stage, "root": str(cfg.paths.root), "date": args.date.isoformat(), "full": args.full,
              "repeat": args.repeat,
              "session_seconds": round(time.perf_counter() - t0, 1), **stamp(cfg, "bench/tags_breakdown.py", argv, code)}
    if args.driver_log is not None:
        result["codegen_logging"] = raise_codegen_logging(spark)
    result["spark_conf"] = conf_values(spark, CODEGEN_CONF)
    return spark, cfg, result, log_start


def conf_values(spark, keys: tuple[str, ...]) -> dict[str, str | None]:
    """The session's value of each setting (its default when unset), None for one this Spark does not know."""
    out: dict[str, str | None] = {}
    for key in keys:
        try:
            out[key] = spark.conf.get(key)
        except Exception:  # noqa: BLE001 - an unknown setting
            out[key] = None
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    spark, cfg, result, log_start = start(args, argv)
    counters = spark_counters(spark)
    t0 = time.perf_counter()
    for _ in range(20):
        counters()
    # each timed call reads the counters twice: about timed_calls x 2 x read_ms of a repeat is the breakdown's own
    result["counters"] = {"read": counters.used, "missing": counters.missing,
                          "read_ms": round((time.perf_counter() - t0) / 20 * 1000, 3)}
    setup = SETUPS[args.stage]
    if setup.prepare is not None and args.prepare and not args.full:
        result["prepare"] = setup.prepare(spark, cfg.paths, args.date)
        print(f"{args.stage} breakdown: prepared, untimed: {result['prepare']}", flush=True)
    cold_first = not (result.get("prepare") or {}).get("built")  # a state built first warmed the session
    trees: list[Node] = []
    plans: list[dict] = []
    for i in range(1, args.repeat + 1):
        try:
            run_repeat(spark, cfg, args, counters, i, trees, plans)
        finally:
            save(args.out, build(result, trees, plans, cold_first, setup.state))
        print(f"{args.stage} breakdown: " + summary_line(i, result["repeats"][-1], i == 1 and cold_first), flush=True)
    result["driver_log"] = driver_log(args.driver_log, log_start, trees)
    save(args.out, build(result, trees, plans, cold_first, setup.state))
    print()
    print(table(result["parts"]))
    print()
    for r in result["repeats"]:
        print(summary_line(r["repeat"], r, r["cold"]))
    if plans:
        print()
        print(plans_table(plans))
    print(f"\ndriver log: {json.dumps({k: v for k, v in result['driver_log'].items() if k != 'path'})}")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
