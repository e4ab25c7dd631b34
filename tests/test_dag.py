"""The DAG parses in a real Airflow, is wired as documented (one task per stage, or the whole night in one task), and
a run over a tiny sample succeeds."""

from __future__ import annotations

import datetime as dt
import logging
import os

import pytest

from jobs.orchestration.registry import NIGHTLY

# The registry is the one place the graph is written; the DAG must follow it, and it must read as documented.
EXPECTED_UPSTREAM = {s.name: set(s.after) for s in NIGHTLY}
NIGHTLY_ORDER = [(s.name, s.after) for s in NIGHTLY]
DAGS = ["cpc_nightly", "cpc_maintenance", "cpc_training"]


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(DAGS) <= set(dagbag.dags)


@pytest.mark.parametrize("dag_id", DAGS)
def test_dag_conventions(dagbag, dag_id):
    dag = dagbag.get_dag(dag_id)
    assert dag.tags, "every DAG is tagged"
    assert dag.catchup is False
    assert dag.doc_md
    for task in dag.tasks:
        assert task.retries >= 1
        assert task.owner == "data-factory"


def test_nightly_tasks_in_order(dagbag):
    assert EXPECTED_UPSTREAM == {
        "ingest": set(), "conform": {"ingest"}, "tags": {"conform"}, "segments": {"tags"}, "propensity": {"tags"},
        "score": {"segments", "propensity"}, "export": {"score"}, "evaluate": {"export"},
    }
    dag = dagbag.get_dag("cpc_nightly")
    assert sorted(t.task_id for t in dag.tasks) == sorted(EXPECTED_UPSTREAM)
    for task_id, upstream in EXPECTED_UPSTREAM.items():
        assert dag.get_task(task_id).upstream_task_ids == upstream, task_id


# ---- airflow.nightly_tasks: one (the night's stages in one task, one process) --------------------------------

def _nightly_dag(monkeypatch, mode: str):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("CPC_NIGHTLY_TASKS", mode)
    bag = DagBag(dag_folder=os.path.join(os.environ["AIRFLOW__CORE__DAGS_FOLDER"], "cpc_nightly.py"))
    return bag, bag.get_dag("cpc_nightly")


def test_the_nightly_as_one_task(airflow_db, monkeypatch):
    bag, dag = _nightly_dag(monkeypatch, "one")
    assert bag.import_errors == {}
    assert [t.task_id for t in dag.tasks] == ["nightly"]
    task = dag.get_task("nightly")
    assert task.upstream_task_ids == set() and task.downstream_task_ids == set()
    assert task.execution_timeout == dag.dagrun_timeout, "the task is the night: its deadline is the run's"
    assert task.retries >= 1 and task.retry_exponential_backoff and task.on_failure_callback
    assert task.owner == "data-factory"
    assert "nightly_tasks" in dag.doc_md and "reruns every stage" in dag.doc_md
    _, dag = _nightly_dag(monkeypatch, "per_stage")
    assert sorted(t.task_id for t in dag.tasks) == sorted(EXPECTED_UPSTREAM)


def test_a_wrong_nightly_tasks_value_fails_the_dag_import_naming_the_variable_and_the_values(airflow_db, monkeypatch):
    bag, dag = _nightly_dag(monkeypatch, "single")
    assert dag is None
    (error,) = bag.import_errors.values()
    assert "CPC_NIGHTLY_TASKS='single': Input should be 'per_stage' or 'one'" in error


def test_the_one_task_runs_every_stage_in_order_through_run_stage(fake_stages, caplog):
    from jobs.airflow_glue import tasks

    calls, _ = fake_stages
    with caplog.at_level(logging.INFO, logger="jobs.airflow_glue.tasks"):
        out = tasks.run_nightly("2026-11-20")
    order = [n for n, _ in NIGHTLY_ORDER]
    assert all(set(after) <= set(order[:i]) for i, (_, after) in enumerate(NIGHTLY_ORDER)), "each after what it reads"
    assert calls == [c for n in order for c in ((n, "2026-11-20"), ("record", n))], "each stage, then its record"
    assert out == {n: {"stage": n} for n in order}
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "nightly 2026-11-20: [1/8] ingest started"
    assert lines[1].startswith("nightly 2026-11-20: [1/8] ingest done in ") and lines[1].endswith(" s")
    assert lines[-1].startswith("nightly 2026-11-20: 8 stages done in ")


def test_the_one_task_stops_at_the_first_failing_stage(fake_stages, caplog):
    from airflow.sdk.exceptions import AirflowFailException

    from jobs.airflow_glue import tasks
    from jobs.platform.errors import DataError

    calls, fail = fake_stages
    fail["score"] = DataError("a list breaks the contact policy")
    with pytest.raises(AirflowFailException, match="score 2026-11-20: data error, not retried"):
        tasks.run_nightly("2026-11-20")
    assert [c[0] for c in calls if c[0] != "record"] == ["ingest", "conform", "tags", "segments", "propensity", "score"]
    assert ("record", "score") not in calls and ("record", "propensity") in calls
    assert "nightly 2026-11-20: [6/8] score failed after " in caplog.text and "not run: export, evaluate" in caplog.text
    calls.clear()
    fail["score"] = OSError("disk full")  # not a data error: raised as it is, left to the task's retries
    with pytest.raises(OSError, match="disk full"):
        tasks.run_nightly("2026-11-20")
    with pytest.raises(ValueError, match="no logical date"):
        tasks.run_nightly(None)


def test_the_one_task_runs_the_night_under_airflow(airflow_db, fake_stages, monkeypatch):
    """``dag.test()`` of the one-task DAG with the fake stages: the task gets the run's logical date."""
    calls, _ = fake_stages
    _, dag = _nightly_dag(monkeypatch, "one")
    run = dag.test(logical_date=dt.datetime(2026, 11, 2, tzinfo=dt.UTC))  # not the e2e sample's date
    assert str(run.state) in ("success", "DagRunState.SUCCESS")
    assert [c for c in calls if c[0] != "record"] == [(n, "2026-11-02") for n, _ in NIGHTLY_ORDER]


@pytest.mark.parametrize("name", [f"{d}.py" for d in DAGS])
def test_dag_file_is_thin(name):
    """DAG files wire jobs: at module level they import Airflow and the light dag_defaults, nothing else."""
    src = open(os.path.join(os.environ["AIRFLOW__CORE__DAGS_FOLDER"], name), encoding="utf-8").read()
    top_level = [line for line in src.splitlines() if line.startswith(("import ", "from "))]
    allowed = ("from __future__", "import datetime", "from airflow.sdk import", "from jobs.airflow_glue import defaults")
    assert all(line.startswith(allowed) for line in top_level), top_level


@pytest.mark.e2e
def test_dag_run_over_tiny_sample_succeeds(sample, spark):
    from jobs.platform import lake

    assert str(sample["dag_run"].state) in ("success", "DagRunState.SUCCESS")
    paths = sample["paths"]
    day = sample["spec"].end_date.isoformat()
    for table, col in [("gold.customer_tags", "snapshot_date"), ("gold.customer_segment", "snapshot_date"),
                       ("gold.cpc_offers", "snapshot_date"), ("gold.cpc_decisions", "snapshot_date"), ("silver.customer_day", "day"), ("bronze.usage", "delivery_date")]:
        assert lake.read(spark, paths, table).where(f"{col} = '{day}'").count() > 0, table
    folder = paths.export_day(sample["spec"].end_date)
    lists = {p.name for p in folder.iterdir() if p.is_symlink()}
    assert {"sms_push", "wechat", "email", "outbound_ivr", "outbound_call", "placements"} <= lists
    assert all((folder / name / "_SUCCESS").exists() and (folder / name / "manifest.json").exists() for name in lists)
    audit = lake.read(spark, paths, "ops.export_audit").where(f"run_date = '{day}'").select("airflow_run_id")
    assert sample["dag_run"].run_id in {r.airflow_run_id for r in audit.distinct().collect()}, "the audit names its run"
