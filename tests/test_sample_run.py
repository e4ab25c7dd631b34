"""``make run``'s steps 2-5 in one process (simulator/sample_run.py) and the DAG run in this process that it uses
(jobs/airflow_glue/in_process.py): the dates, the order, Airflow's ``dag.test()`` and its failure. No Spark."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os

import pytest

from jobs.orchestration.registry import NIGHTLY
from jobs.platform.errors import ConfigError, CpcError, DataError

R = dt.date(2026, 11, 20)


@pytest.fixture()
def cfg_at(cfg):
    def at(end: dt.date = R, **sample):
        return dataclasses.replace(cfg, sample={**cfg.sample, "end_date": end.isoformat(), **sample})
    return at


@pytest.mark.parametrize("days, first, train", [(2, dt.date(2026, 11, 18), dt.date(2026, 11, 17)),
                                                (0, R, dt.date(2026, 11, 19))])
def test_the_first_nightly_day_and_the_training_date_are_make_run_s(cfg_at, days, first, train):
    from simulator import sample_run

    assert sample_run.plan(cfg_at(), days) == (first, train, R)


@pytest.mark.parametrize("days, first, train", [(2, dt.date(2026, 11, 18), dt.date(2026, 11, 17)),
                                                (0, R, dt.date(2026, 11, 19))])
def test_the_steps_run_in_order_in_this_process(cfg_at, monkeypatch, days, first, train):
    """History before the first warm-up day, the training DAG as of the day before it, the warm-up, then the run
    date's nightly DAG; the landing files are checked before any of them. No warm-up: history before R."""
    from jobs.airflow_glue import in_process
    from jobs.orchestration import pipeline
    from simulator import sample_run, warmup

    calls = []
    monkeypatch.setattr(warmup, "spec_of", lambda paths: "spec")
    monkeypatch.setattr(warmup, "check", lambda spec, run_date, days, paths: calls.append(("check", run_date, days)))
    monkeypatch.setattr(pipeline, "history", lambda before, cfg: calls.append(("history", before)))
    monkeypatch.setattr(in_process, "dag_test", lambda dag_id, day: calls.append((dag_id, day)))
    monkeypatch.setattr(warmup, "run", lambda days, cfg: calls.append(("warm-up", days)))
    sample_run.run(cfg=cfg_at(warmup_days=days))
    assert calls == [("check", R, days), ("history", first), ("cpc_training", train), ("warm-up", days),
                     ("cpc_nightly", R)]


def test_a_sample_without_simulated_files_fails_before_any_work(cfg_at, tmp_path, monkeypatch):
    from jobs.orchestration import pipeline
    from jobs.platform.config import Paths
    from simulator import sample_run

    monkeypatch.setattr(pipeline, "history", lambda *a: pytest.fail("no work before the check"))
    cfg = dataclasses.replace(cfg_at(), paths=Paths(tmp_path))
    with pytest.raises(ConfigError, match="no simulated operator in .*run `python -m simulator simulate` first"):
        sample_run.run(1, cfg)


def test_the_nightly_dag_runs_in_this_process_and_a_failed_run_raises_naming_dag_and_date(airflow_db, fake_stages,
                                                                                         tmp_path, monkeypatch):
    import json
    import signal

    from jobs.airflow_glue.in_process import dag_test

    monkeypatch.setenv("CPC_ROOT", str(tmp_path))  # the failure callback's reports/failures.jsonl
    from jobs.airflow_glue.in_process import KEPT_SIGNALS

    handlers = [signal.getsignal(sig) for sig in KEPT_SIGNALS]
    for key in [k for k in os.environ if k.startswith("AIRFLOW_CTX_")]:  # left by a DAG run of an earlier test
        monkeypatch.delenv(key)
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "outer")  # a caller's own: put back as it was
    calls, fail = fake_stages
    dag_test("cpc_nightly", dt.date(2026, 11, 3))  # not the e2e sample's date
    ran = [c[0] for c in calls if c[0] != "record"]
    assert sorted(ran) == sorted(s.name for s in NIGHTLY) and {c[1] for c in calls if c[0] != "record"} == {"2026-11-03"}
    assert all(ran.index(before) < ran.index(s.name) for s in NIGHTLY for before in s.after), "each after its inputs"
    ctx = {k: v for k, v in os.environ.items() if k.startswith("AIRFLOW_CTX_")}
    assert ctx == {"AIRFLOW_CTX_DAG_RUN_ID": "outer"}, "the run's ids do not outlive it"
    assert [signal.getsignal(sig) for sig in KEPT_SIGNALS] == handlers, "SIGTERM stops this process again"
    calls.clear()
    fail["score"] = DataError("a list breaks the contact policy")
    with pytest.raises(CpcError, match=r"cpc_nightly 2026-11-03: the DAG run ended failed .*AIRFLOW_HOME=\S+ "
                                       r"airflow dags test cpc_nightly 2026-11-03"):
        dag_test("cpc_nightly", dt.date(2026, 11, 3))
    assert "export" not in [c[0] for c in calls], "nothing after the failed stage"
    failure = json.loads((tmp_path / "reports" / "failures.jsonl").read_text().splitlines()[-1])
    assert failure["dag_id"] == "cpc_nightly" and "contact policy" in failure["reason"]
    assert {k: v for k, v in os.environ.items() if k.startswith("AIRFLOW_CTX_")} == ctx
    assert [signal.getsignal(sig) for sig in KEPT_SIGNALS] == handlers


def test_what_a_dag_run_leaves_in_the_process_is_put_back_when_it_raises(airflow_db, monkeypatch):
    import signal

    from airflow.sdk import DAG

    from jobs.airflow_glue.in_process import dag_test

    for key in [k for k in os.environ if k.startswith("AIRFLOW_CTX_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "outer")
    before = signal.getsignal(signal.SIGTERM)

    def leaves_and_raises(self, **kwargs):
        os.environ.update(AIRFLOW_CTX_DAG_ID="cpc_nightly", AIRFLOW_CTX_DAG_RUN_ID="manual__x")
        signal.signal(signal.SIGTERM, lambda *a: None)
        raise RuntimeError("the metadata database went away")

    monkeypatch.setattr(DAG, "test", leaves_and_raises)
    with pytest.raises(RuntimeError, match="went away"):
        dag_test("cpc_nightly", R)
    assert {k: v for k, v in os.environ.items() if k.startswith("AIRFLOW_CTX_")} == {"AIRFLOW_CTX_DAG_ID": "outer"}
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_unknown_dag_is_a_configuration_error(airflow_db):
    from jobs.airflow_glue.in_process import dag_test

    with pytest.raises(ConfigError, match="no DAG 'cpc_nigthly' in "):
        dag_test("cpc_nigthly", R)
