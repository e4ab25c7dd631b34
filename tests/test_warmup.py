"""make run's warm-up (simulator/warmup.py, issue 22 item 5): its days, the checks before any Spark work, the order of
responses and nightly runs (with the real campaign platform and a stand-in nightly that publishes lists, no Spark),
the command, the Makefile; and, end to end on a small operator, a run date whose evaluation has outcomes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from jobs.platform.config import Paths, settings
from jobs.platform.errors import ConfigError
from schemas import DELIMITER, FILES
from simulator import warmup
from simulator.generate import SimSpec

ROOT = Path(__file__).resolve().parents[1]
R = dt.date(2026, 11, 20)
DAY = dt.timedelta(days=1)


def _cfg(root: Path, **sample):
    """The test environment's settings in ``root``, with the sample's run date R."""
    cfg = settings("test")
    return dataclasses.replace(cfg, paths=Paths(root), sample={**cfg.sample, "end_date": R.isoformat(), **sample})


def _landing(paths: Paths, spec: SimSpec) -> None:
    """Empty landing folders for every day of ``spec`` (what the checks look at)."""
    for d in spec.dates():
        paths.landing_day(d).mkdir(parents=True, exist_ok=True)


def test_warm_up_days_are_the_days_before_the_run_date():
    assert warmup.warmup_days(R, 2) == [dt.date(2026, 11, 18), dt.date(2026, 11, 19)]
    assert warmup.warmup_days(R, 1) == [dt.date(2026, 11, 19)]
    assert warmup.warmup_days(R, 0) == []
    with pytest.raises(ConfigError, match="give 0"):
        warmup.warmup_days(R, -1)


def test_the_local_sample_has_the_history_training_needs_before_the_warm_up(tmp_path):
    """conf/env/local.yaml: 107 days, 2 warm-up days: training as of 2026-11-17 has its 104 days."""
    local = settings("local")
    days, n = int(local.sample["days"]), int(local.sample["warmup_days"])
    assert (days, n) == (107, 2)
    spec = SimSpec(100, days, local.sample_end_date)
    paths = Paths(tmp_path)
    _landing(paths, spec)
    assert warmup.history_needed(local.sample_end_date - (n + 1) * DAY) == 104
    warmup.check(spec, local.sample_end_date, n, paths)  # passes: 104 days before 2026-11-18
    with pytest.raises(ConfigError, match="leave 103 before the first warm-up day 2026-11-17; training as of 2026-11-16 "
                                          "needs 104: raise sample.days to 108"):
        warmup.check(spec, local.sample_end_date, n + 1, paths)


def test_too_short_a_history_is_one_line_saying_what_to_do(tmp_path):
    spec = SimSpec(100, 105, R)  # the sample before the warm-up: 102 days before 2026-11-18
    paths = Paths(tmp_path)
    _landing(paths, spec)
    with pytest.raises(ConfigError) as err:
        warmup.check(spec, R, 2, paths)
    text = str(err.value)
    assert "\n" not in text
    assert "leave 102 before the first warm-up day 2026-11-18" in text and "training as of 2026-11-17 needs 104" in text
    assert "raise sample.days to 107" in text and "WARMUP_DAYS=0" in text
    warmup.check(spec, R, 0, paths)  # no warm-up: nothing to check
    warmup.check(spec, R, 2, paths, models=False)  # without models one day of history is enough
    with pytest.raises(ConfigError, match="leave 0 before the first warm-up day 2026-11-16; the warm-up needs at least one"):
        warmup.check(SimSpec(100, 5, R), R, 4, paths, models=False)


def test_the_landing_files_must_reach_the_run_date(tmp_path):
    spec = SimSpec(100, 110, R - DAY)  # simulated up to the day before the run date
    paths = Paths(tmp_path)
    _landing(paths, spec)
    with pytest.raises(ConfigError, match=r"end on 2026-11-19 and lack 2026-11-20; they must reach the run date 2026-11-20: "
                                          r"simulate again"):
        warmup.check(spec, R, 2, paths)
    spec = SimSpec(100, 110, R)
    _landing(paths, spec)
    paths.landing_day(R - DAY).rmdir()  # a warm-up day missing
    with pytest.raises(ConfigError, match="lack 2026-11-19"):
        warmup.check(spec, R, 2, paths)


def test_no_warm_up_does_nothing_and_a_missing_operator_is_named_before_any_spark(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the warm-up stepped a day")

    monkeypatch.setattr(warmup, "day_step", refuse)
    monkeypatch.setattr(warmup, "respond", refuse)
    cfg = _cfg(tmp_path / "root")
    assert warmup.run(0, cfg) == []
    assert warmup.run(0, dataclasses.replace(cfg, sample={})) == [], "an environment without a sample has nothing to warm up"
    assert not (tmp_path / "root").exists(), "0 days: no response for the run date, nothing written"
    with pytest.raises(ConfigError, match="no simulated operator .* run `python -m simulator simulate` first"):
        warmup.run(2, cfg)
    spec = SimSpec(100, 105, R)
    paths = cfg.paths
    paths.truth.mkdir(parents=True)
    (paths.truth / "simulation.json").write_text(json.dumps({"customers": 100, "days": 105, "end_date": R.isoformat(),
                                                            "seed": 1, "profile": "easy"}))
    _landing(paths, spec)
    with pytest.raises(ConfigError, match="raise sample.days to 107"):
        warmup.run(2, cfg)


def _responses(paths: Paths, day: dt.date) -> list[list[str]]:
    f = paths.landing_day(day) / FILES["responses"].file_name(day)
    return [line.split(DELIMITER) for line in gzip.decompress(f.read_bytes()).decode().splitlines()[1:]]


def test_each_day_is_answered_before_its_nightly_and_the_run_date_after_the_last(tmp_path, monkeypatch):
    """The real campaign platform, a stand-in nightly that checks the day's files and publishes a list: the run
    date's responses answer the last warm-up day's list."""
    from jobs.orchestration import pipeline
    from simulator.generate import generate
    from simulator.responder import World
    from tests.test_responder import _publish

    cfg = _cfg(tmp_path / "root")
    spec = SimSpec(400, 6, R, seed=3, profile="easy")
    generate(cfg.paths, spec, progress=False)
    world = World.load(spec)
    ran = []

    def nightly(day, cfg_):
        assert cfg_ is cfg
        refs = {e[0] for e in _responses(cfg.paths, day)}  # respond ran first: the day's file answers the day before
        ran.append((day, len(refs)))
        _publish(cfg.paths, world, day, [(k, "P_DATA_5G", "sms_push") for k in range(0, 300)])

    monkeypatch.setattr(pipeline, "nightly", nightly)
    first, last = R - 2 * DAY, R - DAY
    assert warmup.run(2, cfg, models=False) == [first, last]
    assert [d for d, _ in ran] == [first, last]
    assert ran[0][1] == 0 and ran[1][1] > 0, "the first warm-up day answers no list; the second answers the first's"
    on_r = _responses(cfg.paths, R)
    delivered = {e[0] for e in on_r if e[4] == "delivered"}
    assert len(delivered) > 250, "the run date's file delivers the last warm-up day's list (sent the morning after)"


@pytest.fixture()
def _restore_logging():
    """The command line configures the packages' loggers (logs.setup); put them back for the tests that follow."""
    import logging

    from jobs.platform import logs

    saved = {n: (lg.handlers[:], lg.level, lg.propagate) for n in logs.PACKAGES for lg in [logging.getLogger(n)]}
    yield
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


@pytest.mark.usefixtures("_restore_logging")
def test_the_command_takes_the_sample_s_warm_up_days(monkeypatch):
    from simulator import cli as sim_cli

    calls = []
    monkeypatch.setattr(warmup, "run", lambda days, cfg, models=True: calls.append((days, models)))
    monkeypatch.setenv("CPC_ENV", "local")
    assert sim_cli.main(["warmup"]) == 0
    assert sim_cli.main(["warmup", "--days", "0"]) == 0
    assert sim_cli.main(["warmup", "--days", "3", "--no-models"]) == 0
    assert calls == [(2, True), (0, True), (3, False)]
    monkeypatch.setenv("CPC_ENV", "test")  # no warmup_days: none
    assert sim_cli.main(["warmup"]) == 0 and calls[-1] == (0, True)
    assert sim_cli.main(["warmup", "--days", "-1"]) == 2


@pytest.mark.usefixtures("_restore_logging")
def test_sample_run_takes_the_warm_up_days_and_fails_with_one_line(monkeypatch, capsys):
    from jobs.platform.errors import CpcError
    from simulator import cli as sim_cli
    from simulator import sample_run

    calls = []
    monkeypatch.setattr(sample_run, "run", lambda days=None, cfg=None: calls.append(days))
    assert sim_cli.main(["sample-run"]) == 0 and sim_cli.main(["sample-run", "--warmup-days", "0"]) == 0
    assert calls == [None, 0], "None: the sample's warmup_days, chosen by sample_run.run"
    assert sim_cli.main(["sample-run", "--warmup-days", "-1"]) == 2

    def fails(days=None, cfg=None):
        raise CpcError("cpc_nightly 2026-11-20: the DAG run ended failed after 9 s; " + "x" * 300 + " (rerun it alone)")
    monkeypatch.setattr(sample_run, "run", fails)
    capsys.readouterr()
    assert sim_cli.main(["sample-run"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error: CpcError: cpc_nightly 2026-11-20: the DAG run ended failed" in err[0]
    assert "x" * 300 + " (rerun it alone)" in err[0], "the message whole, its remedy at the end"


def test_make_run_warms_up_between_training_and_the_nightly():
    """make run: simulate, then steps 2-5 in one process (simulator/sample_run.py, whose order tests/test_sample_run.py
    checks: history, training DAG, warm-up, nightly DAG), then the summary."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nrun: packages airflow-db\n", 1)[1].split("\n\n", 1)[0]
    steps = [line.split('"')[1] for line in recipe.splitlines() if line.strip().startswith('@echo "run: ')]
    assert [s.split()[1] for s in steps] == ["1/6", "6/6"]
    order = ["python -m simulator simulate", "python -m simulator sample-run --warmup-days $(WARMUP_DAYS)",
             "cpc summary --date $(RUN_DATE)"]
    at = [recipe.index(s) for s in order]
    assert at == sorted(at), "simulate, the one process of steps 2-5, summary"
    assert "test $${PIPESTATUS[0]} -eq 0" in recipe, "a failure of the one process fails make run despite the pipe"
    assert "WARMUP_DAYS ?= $(shell $(BIN)/cpc conf sample.warmup_days" in makefile



def test_make_run_s_filter_hides_airflow_s_chatter_and_keeps_errors_whole():
    """What make run shows of sample-run's output (AIRFLOW_CHATTER, SHORT): Airflow's info lines go only to the log,
    long lines are cut at 200 characters, a one-line error is kept whole (its remedy is at its end)."""
    import subprocess

    var = {k.strip(): v.strip() for line in (ROOT / "Makefile").read_text().splitlines()
           if line.startswith(("AIRFLOW_CHATTER =", "SHORT =")) for k, v in [line.split("=", 1)]}
    error = "sample-run: error: CpcError: " + "y" * 250 + " (rerun it alone: `airflow dags test cpc_nightly 2026-11-20`)"
    lines = ["2026-12-03T02:15:01.123456Z [info     ] Task instance is in running state [airflow.task]",
             "2026-12-03T02:15:02.000000Z [error    ] Task failed [airflow.task]",
             "run: 2/6 loading the history", "z" * 300, error]
    out = subprocess.run(["bash", "-c", f"grep -E -v \"{var['AIRFLOW_CHATTER']}\" | {var['SHORT']}"],
                         input="\n".join(lines) + "\n", capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == [lines[1], lines[2], "z" * 200 + " ...", error]

def test_the_summary_says_how_many_decision_days_the_evaluation_covers(capsys):
    from jobs.orchestration.summary import evaluation_line, print_summary

    assert evaluation_line({"decision_days": 0, "first": None, "last": None}).startswith(
        "Evaluation: covers no decision day with outcomes yet")
    e = {"decision_days": 2, "first": "2026-11-18", "last": "2026-11-19", "treated": 5321, "holdout": 612,
         "conversions": 40, "holdout_conversions": 2, "lift": 0.0042, "lift_low": 0.0011, "lift_high": 0.0073}
    assert evaluation_line(e) == ("Evaluation: covers 2 decision days with outcomes (2026-11-18..2026-11-19): 5,321 treated, "
                                  "40 conversions; 612 held out, 2 conversions; lift +0.0042 [+0.0011, +0.0073]")
    assert "covers 1 decision day with" in evaluation_line({**e, "decision_days": 1, "lift": None})
    print_summary({"run_date": "2026-11-20", "root": "/r", "tags": 1, "tables": {}, "exports": {}, "ingest": {},
                   "campaigns": [], "evaluation": e, "campaign_report": None})
    assert evaluation_line(e) in capsys.readouterr().out


# --- end to end: the warm-up on a small operator, then the run date's nightly ---------------------------------------

@pytest.mark.e2e
def test_after_the_warm_up_the_run_date_s_evaluation_has_outcomes(spark, tmp_path):
    """The test operator (300 customers, easy) over 6 days: the history before the first of 2 warm-up days, no
    training (too short a history: the rule-based fits), the warm-up, then the run date's nightly: its evaluation
    covers both warm-up days, with responses, holdouts and a lift."""
    from pyspark.sql import functions as F

    from jobs.orchestration import pipeline, summary
    from jobs.platform import lake
    from jobs.stages import evaluate
    from jobs.stages.evaluate import rebuild
    from simulator.generate import generate

    cfg = _cfg(tmp_path / "root", days=6, warmup_days=2)
    spec = SimSpec(int(cfg.sample["customers"]), 6, R, int(cfg.sample["seed"]), str(cfg.sample["profile"]))
    generate(cfg.paths, spec, progress=False)
    first = R - 2 * DAY
    pipeline.history(first, cfg)
    assert warmup.run(2, cfg, models=False) == [first, R - DAY]
    pipeline.nightly(R, cfg)
    paths = cfg.paths
    decided = {r[0] for r in lake.read(spark, paths, "gold.campaign_outcomes").where(F.col("snapshot_date") < F.lit(R))
               .where(F.col("delivered") | F.col("converted")).select("snapshot_date").distinct().collect()}
    assert decided == {first, R - DAY}, "both warm-up days' decisions have outcomes on the run date"
    rows = lake.read(spark, paths, "gold.campaign_eval").where((F.col("eval_date") == F.lit(R)) & (F.col("level") == "all")).collect()
    assert len(rows) == 1
    total = rows[0]
    assert total["treated"] > 0 and total["holdout"] > 0 and total["delivered"] > 0 and total["opened"] > 0
    assert total["lift"] is not None and total["lift_low"] <= total["lift"] <= total["lift_high"]
    # summary.summary's evaluation part (the whole summary counts every table: tests/test_evaluation.py runs it)
    covered = summary.evaluation(paths, R)  # read without Spark (jobs/platform/arrow_lake.py)
    assert covered["decision_days"] == 2 and covered["first"] == first.isoformat()
    assert {k: covered[k] for k in summary.EVAL_FIGURES} == {k: total[k] for k in summary.EVAL_FIGURES}, "as Spark reads it"
    assert "covers 2 decision days with outcomes" in summary.evaluation_line(covered)
    assert (paths.reports / f"campaigns_{R.isoformat()}.html").exists()
    # The run date's outcomes were a step from the warm-up's last night, and equal the rebuild of every date on the
    # pipeline's own responses and orders. Over these few days every decision date is still in its 14-day window, so
    # the step rebuilt them all: this checks the step's path on real data, not which dates it leaves out
    # (tests/test_evaluate_rebuild.py does that, night after night).
    logged = lake.read(spark, paths, rebuild.LOG).where(F.col("eval_date") == F.lit(R)).first()
    assert (logged["method"], logged["reason"].split(";")[0]) == ("step", f"step from the evaluation of {R - DAY}")
    stepped = sorted(map(tuple, lake.read(spark, paths, rebuild.OUTCOMES).collect()))
    assert evaluate.rebuild_outcomes(spark, paths, R, evaluate.settings(), full=True)[0] == "full"
    assert sorted(map(tuple, lake.read(spark, paths, rebuild.OUTCOMES).collect())) == stepped


def test_make_run_does_not_build_the_class_archive_the_suite_and_benchmarks_do():
    """The class-data archive costs about 41 s to build and saves about 3 s per JVM start: `make run` starts one JVM
    (steps 2-5 in one process), so it sets up the packages and jars only; `setup` (the suite, the benchmarks, the
    loops) adds the archive."""
    makefile = (ROOT / "Makefile").read_text()
    targets = dict(line.split(":", 1) for line in makefile.splitlines() if re.match(r"^[a-z-]+:", line))
    assert targets["packages"].split() == ["$(STAMP)", "$(JARS)"]
    assert targets["run"].split() == ["packages", "airflow-db"] and targets["airflow-db"].split() == ["packages"]
    assert "jobs.platform.jvm archive" in makefile.split("\nsetup: packages\n", 1)[1].split("\n\n", 1)[0]
    for target in ("test", "test-fast", "bench", "loop", "headline", "cluster-run", "airflow-backfill"):
        assert "setup" in targets[target].split(), target
    assert targets["lint"].split() == ["$(STAMP)"], "ruff and the import contracts need the packages only"


def test_setup_falls_back_to_pip_when_uv_fails_and_fails_when_pip_fails_too(tmp_path):
    """The Makefile's install (the `$(STAMP)` rule) run by bash against a stub Python that logs its calls: uv
    installs; where uv cannot be installed or cannot install, pip installs as before; where pip fails too the
    recipe fails (so make stops before `touch`)."""
    recipe = (ROOT / "Makefile").read_text().split("\n$(STAMP): setup.cfg pyproject.toml\n", 1)[1].split("\n\n", 1)[0]
    lines = recipe.splitlines()
    first = next(i for i, line in enumerate(lines) if "'uv==$(UV_VERSION)'" in line)
    last = next(i for i, line in enumerate(lines) if line.rstrip().endswith("; }"))
    command = "\n".join(line.lstrip("\t") for line in lines[first:last + 1])
    for name, value in {"$(BIN)/python": "./python", "$(UV_VERSION)": "0", "$(UV_INDEX)": "", "$(UV_TOOLS)": ""}.items():
        command = command.replace(name, value)
    stub = tmp_path / "python"
    stub.write_text('#!/bin/bash\necho "$*" >> calls\ncase "$*" in\n  *"-m uv "*) exit ${UV_RC:-0};;\n'
                    '  *"uv==0"*) exit ${GET_UV_RC:-0};;\n  *) exit ${PIP_RC:-0};;\nesac\n')
    stub.chmod(0o755)

    def run(**rc):
        (tmp_path / "calls").unlink(missing_ok=True)
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env={**os.environ, **{k: str(v) for k, v in rc.items()}},
                              capture_output=True, text=True)
        return done.returncode, [" ".join(c.split()[:3]) for c in (tmp_path / "calls").read_text().splitlines()]

    assert run() == (0, ["-m pip install", "-m uv pip"])
    fallback = ["-m pip install", "-m pip install"]
    assert run(UV_RC=1) == (0, ["-m pip install", "-m uv pip", *fallback]), "uv could not install: pip does"
    assert run(GET_UV_RC=1) == (0, ["-m pip install", *fallback]), "no uv to be had: pip installs"
    rc, _ = run(UV_RC=1, PIP_RC=1)
    assert rc != 0, "both failing fails the recipe"
