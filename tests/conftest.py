"""Shared fixtures: one Delta-enabled SparkSession for the whole run, a tiny simulated operator, and a
nightly run over it done once per session (by the real Airflow DAG, in-process, with `dag.test()`)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Before anything imports Airflow or reads settings: a private Airflow home and the test environment.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="cpc-test-"))
os.environ["CPC_ENV"] = "test"
os.environ["CPC_ROOT"] = str(_SESSION_DIR / "root")
os.environ["AIRFLOW_HOME"] = str(_SESSION_DIR / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["GX_ANALYTICS_ENABLED"] = "False"
os.environ.pop("CPC_NIGHTLY_TASKS", None)  # the DAG as conf/env/test.yaml wires it; tests that need `one` set it
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from jobs.platform.config import settings  # noqa: E402

RUN_DATE = "2026-11-20"
# py4j logs "Closing down clientserver connection" from a finaliser at interpreter exit, after pytest has
# closed the stream it writes to ("--- Logging error ---" under a passing run). Its INFO lines say nothing a test needs.
logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def cfg():
    return settings("test")


@pytest.fixture(scope="session")
def spark(cfg):
    from jobs.platform.spark import get_spark

    session = get_spark(cfg, app_name="cpc-tests")
    yield session
    session.stop()


@pytest.fixture(autouse=True, scope="module")
def _drop_cached_frames():
    """Frames a module left cached are dropped when it ends. ``apply_tags`` caches its wide frame for the band cut
    points and the tags stage clears it after its write; a test that calls ``apply_tags`` does not. Each such
    cache kept its 300-column plan and the broadcast relations that plan holds for the
    rest of the session: about 110 of them by the middle of the suite, and the session's 2 GB driver filled
    (CI at c0d0857: a broadcast failed in the last test). Starts no session of its own."""
    yield
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.catalog.clearCache()


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata database (SQLite in the session's private AIRFLOW_HOME), migrated once."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return os.environ["AIRFLOW_HOME"]


@pytest.fixture(scope="session")
def sample(spark, cfg, airflow_db):
    """A small operator (conf/env/test.yaml: 300 customers, 10 days) run through the whole nightly path:
    history by the CLI's function, the last day by the real DAG with Airflow's `dag.test()`."""
    from jobs.orchestration import pipeline
    from simulator.generate import SimSpec, generate

    spec = SimSpec(int(cfg.sample["customers"]), int(cfg.sample["days"]), cfg.sample_end_date, int(cfg.sample["seed"]),
                   str(cfg.sample.get("profile", "realistic")))
    generate(cfg.paths, spec, progress=False)
    pipeline.history(spec.end_date, cfg)
    from jobs.airflow_glue.in_process import dag_test

    run = dag_test("cpc_nightly", spec.end_date)  # as `airflow dags test`; raises unless the run succeeded
    return {"spec": spec, "paths": cfg.paths, "dag_run": run}


# Fixtures that run a whole simulated operator through the pipeline (or a large part of it). A test that uses
# one is end-to-end whatever its file says: it is marked `e2e` here, so `make test-fast` (-m "not e2e") never
# waits for one, and the marker cannot drift from what the test really needs.
E2E_FIXTURES = {"sample", "lake_paths", "trained", "corpus", "copy_of", "run", "root"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture()
def copy_of(sample, cfg, tmp_path):
    """A private copy of the sample's storage root (Delta tables are plain folders) and its settings:
    ``copy_of(name)`` -> the settings of ``tmp_path / name``."""
    import dataclasses
    import shutil

    from jobs.platform.config import Paths

    def make(name: str):
        root = tmp_path / name
        shutil.copytree(sample["paths"].root, root, symlinks=True)
        return dataclasses.replace(cfg, paths=Paths(root))
    return make


@pytest.fixture()
def fake_stages(monkeypatch):
    """Every nightly stage replaced by a fake that notes its call (``score`` fails with ``fail``), and
    ``pipeline.record`` by one that notes the record: no Spark."""
    from jobs.orchestration import pipeline, registry

    calls, fail = [], {}

    def fake(name):
        def run(ds, cfg=None):
            calls.append((name, str(ds)))
            if name in fail:
                raise fail[name]
            return {"stage": name}
        return run

    monkeypatch.setattr(registry, "STAGES", {**registry.STAGES, **{n: fake(n) for n in registry.NIGHTLY_NAMES}})
    monkeypatch.setattr(pipeline, "record", lambda ds, stage, cfg=None: calls.append(("record", stage)))
    return calls, fail
