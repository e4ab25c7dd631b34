"""The command lines, `cpc` (jobs.cli) and `python -m simulator` (simulator.cli), without Spark: the commands and
their help, settings, usage errors, one-line errors and --debug, and what the stage commands call (the stage
functions are replaced by fakes, so nothing here starts Spark)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from jobs import cli
from jobs.orchestration import registry
from jobs.platform import logs
from jobs.platform.config import settings
from jobs.platform.errors import ConfigError

PROJECT = Path(__file__).resolve().parents[1]
COMMANDS = {"ingest", "conform", "nightly", "tags", "segments", "propensity", "score", "export", "evaluate", "summary",
            "reopen", "maintain", "train", "funnel", "backfill", "rebuild-list", "history", "sql", "serve",
            "catalogue-doc", "conf"}
SIMULATOR_COMMANDS = {"simulate", "respond", "warmup", "loop", "loops", "headline", "params", "sample-run"}


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch):
    """main() configures the packages' loggers (logs.setup); put them back for the tests that follow."""
    monkeypatch.setenv("COLUMNS", "200")  # help tables wide enough that nothing is cut
    saved = {n: (lg.handlers[:], lg.level, lg.propagate) for n in logs.PACKAGES for lg in [logging.getLogger(n)]}
    yield
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


@pytest.fixture(autouse=True)
def _no_spark(monkeypatch):
    """Nothing here may start Spark (the stage functions are replaced by fakes): fail loudly if one would."""
    from jobs.platform import spark

    def refuse(*args, **kwargs):
        raise AssertionError("a CLI test tried to start Spark")

    monkeypatch.setattr(spark, "session_builder", refuse)


def _commands(app: typer.Typer) -> dict:
    return typer.main.get_command(app).commands


def test_help_lists_every_command_and_each_command_and_option_has_help(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out, name
    commands = _commands(cli.app)
    assert set(commands) == COMMANDS
    for name, command in commands.items():
        assert (command.help or "").strip(), f"`cpc {name}` has no help"
        for param in command.params:
            assert (getattr(param, "help", None) or "").strip(), f"`cpc {name}` {param.name} has no help"
        assert cli.main([name, "--help"]) == 0
        assert f"cpc {name}" in capsys.readouterr().out


def test_stage_commands_are_the_registry_s():
    commands = _commands(cli.app)
    for name, stage in registry.STAGES.items():
        assert name in commands
        if name not in ("ingest", "conform"):
            assert stage.doc in " ".join(commands[name].help.split()), name


def test_the_production_cli_has_no_simulator_command(capsys):
    assert not SIMULATOR_COMMANDS & set(_commands(cli.app))
    assert cli.main(["simulate"]) == 2
    assert "No such command" in capsys.readouterr().err
    # importing the production CLI imports no simulator module (the import-linter contract says the same)
    proc = _run("-c", "import sys, jobs.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'simulator'))")
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


def test_conf_prints_a_setting(capsys):
    assert cli.main(["conf", "sample.end_date"]) == 0
    assert capsys.readouterr().out.strip() == settings().sample_end_date.isoformat()
    assert cli.main(["conf", "nightly_tasks"]) == 0
    assert capsys.readouterr().out.strip() == settings().nightly_tasks


def test_an_error_is_one_line_on_stderr_with_exit_1(capsys):
    assert cli.main(["conf", "sample.no_such_setting"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("cpc: error: ConfigError: no setting 'sample.no_such_setting'")
    assert lines[0].endswith("(run with --debug for details)")
    assert "Traceback" not in captured.err


def test_debug_reraises_before_or_after_the_command():
    with pytest.raises(ConfigError, match="no setting"):
        cli.main(["--debug", "conf", "no.such.setting"])
    with pytest.raises(ConfigError, match="no setting"):
        cli.main(["conf", "no.such.setting", "--debug"])


def test_debug_after_a_double_dash_is_an_argument(capsys):
    assert cli.main(["conf", "--", "--debug"]) == 1
    assert "no setting '--debug'" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["tags"],                                               # --date missing
    ["tags", "--date", "2026-13-01"],                       # not a date
    ["ingest"],                                             # neither --date nor --start/--end
    ["ingest", "--date", "2026-11-20", "--start", "2026-11-19", "--end", "2026-11-20"],
    ["conform", "--start", "2026-11-20", "--end", "2026-11-19"],
    ["ingest", "--date", "2026-11-20", "--kind", "no_such_kind"],
    ["backfill", "--start", "2026-11-20", "--end", "2026-11-20", "--from-stage", "no_such_stage"],
    ["no-such-command"],
])
def test_usage_errors_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Usage: cpc" in err and "Traceback" not in err


def test_bad_date_names_the_expected_format(capsys):
    assert cli.main(["tags", "--date", "20261120x"]) == 2
    assert "expected YYYY-MM-DD" in capsys.readouterr().err


def test_a_stage_command_runs_the_registry_stage(monkeypatch):
    calls = []
    for name in ("tags", "train", "maintain"):
        monkeypatch.setitem(registry.STAGES, name, lambda day, cfg, name=name, **kw: calls.append((name, day, cfg.env, kw)))
    assert cli.main(["tags", "--date", "2026-11-20"]) == 0
    assert cli.main(["train", "--date", "2026-11-12"]) == 0
    assert cli.main(["maintain", "--date", "2026-11-15"]) == 0
    env = settings().env
    assert calls == [("tags", dt.date(2026, 11, 20), env, {"full": False, "check": False}),
                     ("train", dt.date(2026, 11, 12), env, {}), ("maintain", dt.date(2026, 11, 15), env, {})]


def test_tags_full_and_check_reach_the_stage(monkeypatch):
    calls = []
    monkeypatch.setitem(registry.STAGES, "tags", lambda day, cfg, **kw: calls.append((day, kw)))
    assert cli.main(["tags", "--date", "2026-11-20", "--full"]) == 0
    assert cli.main(["tags", "--date", "2026-11-21", "--check"]) == 0
    assert calls == [(dt.date(2026, 11, 20), {"full": True, "check": False}),
                     (dt.date(2026, 11, 21), {"full": False, "check": True})]


def test_evaluate_full_reaches_the_stage(monkeypatch):
    calls = []
    monkeypatch.setitem(registry.STAGES, "evaluate", lambda day, cfg, **kw: calls.append((day, kw)))
    assert cli.main(["evaluate", "--date", "2026-11-20"]) == 0
    assert cli.main(["evaluate", "--date", "2026-11-21", "--full"]) == 0
    assert calls == [(dt.date(2026, 11, 20), {"full": False}), (dt.date(2026, 11, 21), {"full": True})]


def test_reopen_also_invalidates_the_tag_states_from_that_date(monkeypatch):
    from jobs.platform import spark as spark_module
    from jobs.stages import ingest
    from jobs.stages.tags import incremental

    calls = []
    monkeypatch.setattr(spark_module, "get_spark", lambda cfg=None, app_name="": "no-spark")
    monkeypatch.setattr(ingest, "reopen", lambda spark, paths, day: calls.append(("reopen", day)))
    monkeypatch.setattr(incremental, "invalidate", lambda spark, paths, since=None: calls.append(("invalidate", since)))
    assert cli.main(["reopen", "--date", "2026-11-03"]) == 0
    assert calls == [("reopen", dt.date(2026, 11, 3)), ("invalidate", dt.date(2026, 11, 3))]


def test_ingest_passes_the_range_and_the_kinds(monkeypatch):
    from jobs.platform import spark as spark_module
    from jobs.stages import ingest

    calls = []
    monkeypatch.setattr(spark_module, "get_spark", lambda cfg=None, app_name="": "no-spark")
    monkeypatch.setattr(ingest, "ingest", lambda spark, paths, days, kinds=None: calls.append((spark, days, kinds)))
    assert cli.main(["ingest", "--start", "2026-11-19", "--end", "2026-11-20", "--kind", "usage", "--kind", "billing"]) == 0
    assert cli.main(["ingest", "--date", "2026-11-20"]) == 0
    assert calls == [("no-spark", [dt.date(2026, 11, 19), dt.date(2026, 11, 20)], ["usage", "billing"]),
                     ("no-spark", [dt.date(2026, 11, 20)], None)]


def test_nightly_runs_each_date_then_prints_the_last_date_s_summary(monkeypatch):
    from jobs.orchestration import pipeline, summary

    ran, summarised = [], []
    monkeypatch.setattr(pipeline, "nightly", lambda day, cfg: ran.append(day))
    monkeypatch.setattr(summary, "summary", lambda day, cfg: {"day": day})
    monkeypatch.setattr(summary, "print_summary", summarised.append)
    assert cli.main(["nightly", "--start", "2026-11-18", "--end", "2026-11-20"]) == 0
    assert ran == [dt.date(2026, 11, 18), dt.date(2026, 11, 19), dt.date(2026, 11, 20)]
    assert summarised == [{"day": dt.date(2026, 11, 20)}]
    assert cli.main(["nightly", "--date", "2026-11-21", "--no-summary"]) == 0
    assert ran[-1] == dt.date(2026, 11, 21) and len(summarised) == 1, "the stages ran, no summary"


def test_nightly_runs_from_one_stage_to_another_recording_each(monkeypatch):
    from jobs.orchestration import pipeline
    from jobs.orchestration.registry import NIGHTLY_NAMES

    ran, recorded = [], []
    monkeypatch.setattr(pipeline, "STAGES", {s: (lambda day, cfg, s=s: ran.append(s) or s) for s in NIGHTLY_NAMES})
    monkeypatch.setattr(pipeline, "record", lambda day, stage, cfg: recorded.append(stage))
    out = pipeline.nightly("2026-11-20", None, to_stage="export")
    assert ran == recorded == list(NIGHTLY_NAMES[:NIGHTLY_NAMES.index("export") + 1]) and "evaluate" not in ran
    assert out == {s: s for s in ran}
    ran.clear()
    pipeline.nightly("2026-11-20", None, from_stage="score", to_stage="score")
    assert ran == ["score"]
    with pytest.raises(ValueError, match="unknown stage 'exprot'"):
        pipeline.nightly("2026-11-20", None, to_stage="exprot")


def test_main_sets_up_plain_log_lines(capsys):
    assert cli.main(["conf", "env"]) == 0
    logging.getLogger("jobs.some_module").info("a plain line")
    logging.getLogger("jobs.some_module").debug("not without --debug")
    assert capsys.readouterr().out.splitlines()[-1] == "a plain line"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120)


def test_python_m_simulator_help_lists_its_commands():
    proc = _run("-m", "simulator", "--help")
    assert proc.returncode == 0, proc.stderr
    for name in SIMULATOR_COMMANDS:
        assert name in proc.stdout
    from simulator import cli as sim_cli

    commands = _commands(sim_cli.app)
    assert set(commands) == SIMULATOR_COMMANDS
    for name, command in commands.items():
        assert (command.help or "").strip(), name
        assert all((getattr(p, "help", None) or "").strip() for p in command.params), name


def test_simulator_errors_are_one_line(tmp_path):
    env_root = tmp_path / "empty-root"  # no simulation there: respond cannot find the truth
    proc = subprocess.run([sys.executable, "-m", "simulator", "respond", "--date", "2026-11-21"], cwd=PROJECT,
                          env={**os.environ, "CPC_ROOT": str(env_root)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("simulator: error: FileNotFoundError: "), proc.stderr
    assert not env_root.exists()
    proc = _run("-m", "simulator", "respond")
    assert proc.returncode == 2 and "Missing option '--date'" in proc.stderr


def test_the_installed_cpc_script_takes_debug():
    script = Path(sys.executable).parent / "cpc"
    if not script.exists():
        pytest.skip("the cpc console script is not installed (pip install -e .)")
    proc = subprocess.run([str(script), "conf", "no.such"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("cpc: error: ConfigError")
    proc = subprocess.run([str(script), "--debug", "conf", "no.such"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ConfigError: no setting" in proc.stderr
    proc = subprocess.run([str(script), "--debug", "conf", "sample.end_date"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == settings().sample_end_date.isoformat()


def test_the_cli_runs_as_a_file_and_as_a_module():
    """`spark-submit jobs/cli.py ...` (docs/cluster.md) runs the file: jobs/platform must not hide `platform`."""
    for args in (["jobs/cli.py"], ["-m", "jobs.cli"]):
        proc = _run(*args, "conf", "sample.end_date")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == settings().sample_end_date.isoformat()


def test_an_error_naming_several_files_keeps_each_on_its_line():
    from jobs.cli import error_line
    from jobs.platform.errors import IngestError

    text = error_line("cpc", IngestError("2 file(s) rejected (raw files kept in var/archive):\n  a.csv.gz: empty file\n  b.csv.gz: not a gzip file"))
    assert text.splitlines() == ["cpc: error: IngestError: 2 file(s) rejected (raw files kept in var/archive): (run with --debug for details)",
                                 "  a.csv.gz: empty file", "  b.csv.gz: not a gzip file"]
    assert error_line("cpc", RuntimeError("one\ntwo")).count("\n") == 0, "other errors: their first line"
