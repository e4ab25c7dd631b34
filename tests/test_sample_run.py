"""``make run``'s steps 2-5 in one process (simulator/sample_run.py) and the DAG run in this process that it uses
(jobs/airflow_glue/in_process.py): the dates, the order, Airflow's ``dag.test()`` and its failure. No Spark."""

from __future__ import annotations

import dataclasses
import datetime as dt

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


def test_the_steps_run_in_order_in_this_process(cfg_at, monkeypatch):
    """History before the first warm-up day, the training DAG as of the day before it, the warm-up, then the run
    date's nightly DAG; the landing files are checked before any of them."""
    from jobs.airflow_glue import in_process
    from jobs.orchestration import pipeline
    from simulator import sample_run, warmup

    calls = []
    monkeypatch.setattr(warmup, "spec_of", lambda paths: "spec")
    monkeypatch.setattr(warmup, "check", lambda spec, run_date, days, paths: calls.append(("check", run_date, days)))
    monkeypatch.setattr(pipeline, "history", lambda before, cfg: calls.append(("history", before)))
    monkeypatch.setattr(in_process, "dag_test", lambda dag_id, day: calls.append((dag_id, day)))
    monkeypatch.setattr(warmup, "run", lambda days, cfg: calls.append(("warm-up", days)))
    sample_run.run(cfg=cfg_at(warmup_days=2))
    assert calls == [("check", R, 2), ("history", dt.date(2026, 11, 18)), ("cpc_training", dt.date(2026, 11, 17)),
                     ("warm-up", 2), ("cpc_nightly", R)]


def test_a_sample_without_simulated_files_fails_before_any_work(cfg_at, tmp_path, monkeypatch):
    from jobs.orchestration import pipeline
    from jobs.platform.config import Paths
    from simulator import sample_run

    monkeypatch.setattr(pipeline, "history", lambda *a: pytest.fail("no work before the check"))
    cfg = dataclasses.replace(cfg_at(), paths=Paths(tmp_path))
    with pytest.raises(ConfigError, match="no simulated operator in .*run `python -m simulator simulate` first"):
        sample_run.run(1, cfg)


@pytest.fixture()
def fake_stages(monkeypatch):
    """The nightly stages replaced by fakes that note their calls (those in ``fail`` raise), without Spark."""
    from jobs.orchestration import pipeline, registry

    calls, fail = [], {}

    def fake(name):
        def run(ds, cfg=None):
            calls.append((name, str(ds)))
            if name in fail:
                raise fail[name]
        return run

    monkeypatch.setattr(registry, "STAGES", {**registry.STAGES, **{n: fake(n) for n in registry.NIGHTLY_NAMES}})
    monkeypatch.setattr(pipeline, "record", lambda ds, stage, cfg=None: None)
    return calls, fail


def test_the_nightly_dag_runs_in_this_process_and_a_failed_run_raises_naming_dag_and_date(airflow_db, fake_stages):
    from jobs.airflow_glue.in_process import dag_test

    calls, fail = fake_stages
    dag_test("cpc_nightly", dt.date(2026, 11, 3))  # not the e2e sample's date
    ran = [c[0] for c in calls]
    assert sorted(ran) == sorted(s.name for s in NIGHTLY) and {c[1] for c in calls} == {"2026-11-03"}
    assert all(ran.index(before) < ran.index(s.name) for s in NIGHTLY for before in s.after), "each after its inputs"
    calls.clear()
    fail["score"] = DataError("a list breaks the contact policy")
    with pytest.raises(CpcError, match=r"cpc_nightly 2026-11-03: the DAG run ended failed .*airflow dags test "
                                       r"cpc_nightly 2026-11-03"):
        dag_test("cpc_nightly", dt.date(2026, 11, 3))
    assert "export" not in [c[0] for c in calls], "nothing after the failed stage"


def test_an_unknown_dag_is_a_configuration_error(airflow_db):
    from jobs.airflow_glue.in_process import dag_test

    with pytest.raises(ConfigError, match="no DAG 'cpc_nigthly' in "):
        dag_test("cpc_nigthly", R)
