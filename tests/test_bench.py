"""The benchmark's own logic: its DuckDB leg must compute what the Spark engine computes (or ratio 2 compares
different work), and its report must say by how much each target is missed."""

from __future__ import annotations

import json

import pytest

from bench import nightly_bench


def test_duckdb_computes_the_same_tags_as_the_engine(sample, monkeypatch, capsys):
    """Every tag of the catalogue, translated to DuckDB SQL, over the same Delta files: the same customers and
    the same values as ``gold.customer_tags`` written by the nightly DAG; the window features in several
    passes, one per slice of the customers, as at a million."""
    from bench import duckdb_tags

    monkeypatch.setattr(duckdb_tags, "SLICE_CUSTOMERS", 100)
    out = duckdb_tags.compare(sample["paths"].root, sample["spec"].end_date, threads=1)
    assert out["rows"] > 0 and out["matched"] == out["rows"]
    assert (out["only_duckdb"], out["only_spark"], out["differing"]) == (0, 0, {})
    assert "window features: pass 2/" in capsys.readouterr().out, "the features were built in several passes"


def test_targets_say_met_or_by_how_much_they_are_missed():
    got = nightly_bench.targets(1200.0, 5.0, {"per_tag_queries_over_engine": 16.0, "spark_engine_over_duckdb": None,
                                              "day_n_over_day_1": 1.1, "ge_share_of_ingest": 0.3})
    assert got["nightly_seconds"]["met"] is False and got["nightly_seconds"]["missed_by"] == "2.00x"
    assert got["nightly_peak_memory_gib"]["met"] is True
    assert got["per_tag_queries_over_engine"]["missed_by"] == "1.25x", "a minimum is missed by limit / value"
    assert got["spark_engine_over_duckdb"]["met"] is None, "not measured is neither met nor missed"
    assert got["day_n_over_day_1"]["met"] is True and got["ge_share_of_ingest"]["missed_by"] == "1.20x"
    md = nightly_bench.markdown({"customers": 1000, "days": 9, "machine": {"cores": 2, "memory_gib": 23.5},
                                 "spark_master": "local[2]", "nightly_seconds": 1200.0, "nightly_peak_memory_gib": 5.0,
                                 "complete": True, "stages": [], "phases": {}, "targets": got})
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("|")]
    assert ["nightly_seconds", "max 600", "1200.0", "no (2.00x)"] in cells
    assert ["spark_engine_over_duckdb", "max 2", "None", "n/a"] in cells


def test_growth_exponent_fits_complete_runs_of_the_same_length(tmp_path):
    def result(customers: int, seconds: float, days: int = 90, complete: bool = True) -> None:
        (tmp_path / f"nightly_{customers}x{days}.json").write_text(json.dumps(
            {"customers": customers, "days": days, "nightly_seconds": seconds, "complete": complete}))

    result(100_000, 100.0)
    assert nightly_bench.growth(tmp_path, 90) is None, "one size gives no exponent"
    result(400_000, 200.0)
    result(1_000_000, 50.0, complete=False)  # a run that stopped is left out
    result(900_000, 10.0, days=30)  # so is a run of another length
    got = nightly_bench.growth(tmp_path, 90)
    assert got["sizes"] == [100_000, 400_000] and got["exponent"] == pytest.approx(0.5)


def test_the_nightly_tags_step_is_compared_with_the_full_stage_and_duckdb():
    bench = object.__new__(nightly_bench.NightlyBench)  # the ratios read only what the phases recorded
    bench.stages = [{"phase": "state", "stage": "tags", "seconds": 90.0}, {"phase": "nightly", "stage": "tags", "seconds": 30.0},
                    {"phase": "alternatives", "stage": "tags --full", "seconds": 120.0}]
    bench.alternatives, bench.ge, bench.phases = {"duckdb_seconds": 20.0}, {}, {}
    got = bench.ratios(0.0, 0.0)
    assert got["tags_stage_over_full_stage"] == 0.25, "the nightly's step, not the state phase's bootstrap"
    assert got["tags_stage_over_duckdb"] == 1.5
    assert nightly_bench.targets(None, None, got)["tags_stage_over_duckdb"]["missed_by"] == "1.50x"
    bench.alternatives = {}
    assert bench.ratios(0.0, 0.0)["tags_stage_over_duckdb"] is None, "no DuckDB figure: not measured"


def test_results_record_the_commit_that_measured_them():
    from jobs.platform.provenance import git_state

    got = git_state()
    assert got["commit"] and len(got["commit"]) == 40 and int(got["commit"], 16) >= 0, got
    assert isinstance(got["dirty"], bool)


def test_the_night_ab_bench_compares_the_lists_bytes_not_their_random_folders(tmp_path):
    """bench/night_ab.py (and bench/codegen_limit.py, which runs it) stops when two nights publish different lists
    (it reads them as bench/compare_runs.py does): each night publishes into folders of random names, and a manifest
    records when; only the lists' names and bytes count."""
    import gzip

    from bench import compare_runs

    def night(root, folder, body, when):
        day = root / "exports" / "2026-11-20"
        (day / folder).mkdir(parents=True)
        (day / folder / "sms_push_20261120.csv.gz").write_bytes(gzip.compress(body, mtime=0))
        (day / folder / "manifest.json").write_text(json.dumps(
            {"rows": 1, "files": [{"name": "sms_push_20261120.csv.gz"}], "published_at": when}))
        (day / "sms_push").symlink_to(folder)
        return compare_runs.lists(root, "2026-11-20")

    first = night(tmp_path / "a", ".sms_push-1a92e136", b"rows", "00:01")
    assert night(tmp_path / "b", ".sms_push-440b776c", b"rows", "00:03") == first
    assert night(tmp_path / "c", ".sms_push-1a92e136", b"other rows", "00:01") != first


def test_the_night_ab_bench_names_each_night_and_output_that_differs_and_takes_medians():
    from bench import night_ab

    warm = {"lists": {"sms_push": {"rows": 1}}, "tables": {"gold.cpc_offers": {"rows": 3}, "gold.cpc_funnel": {"rows": 2}}}
    same = {**warm, "seconds": {"score": 4.0}, "night": 10.0}
    other = {"lists": {"sms_push": {"rows": 2}}, "tables": {"gold.cpc_offers": {"rows": 3}}, "seconds": {"score": 2.0},
             "night": 6.0}
    runs = {"65535": [same, same], "8000": [same, other]}
    assert night_ab.differing(warm, runs) == ["8000 #2: sms_push", "8000 #2: gold.cpc_funnel"]
    assert night_ab.differing(warm, {"65535": [same]}) == []
    assert night_ab.medians(runs) == {"65535": {"score": 4.0, "night": 10.0}, "8000": {"score": 3.0, "night": 8.0}}
    assert set(night_ab.SWITCHES) == {"codegen_limit"}
    with pytest.raises(SystemExit):  # before any Spark
        night_ab.main(["codegen_limit", "--date", "2026-11-20", "--repeat", "0"])


def test_the_decision_bench_copies_each_customer_s_candidates_under_new_ids_and_checks_the_contacts(spark):
    """bench/decision_scale.py: every candidate ``copies`` times, each copy a customer of its own; the checks
    count contacts per channel, a channel over its capacity and a customer contacted twice."""
    from bench import decision_scale

    cands = spark.createDataFrame([("C1", "sms", 1.0), ("C1", "email", 2.0), ("C2", "sms", 3.0)],
                                  "customer_id string, channel string, expected_value double")
    copied = decision_scale.copies_of(cands, 3)
    assert copied.columns == cands.columns and copied.count() == 9
    assert sorted(r[0] for r in copied.select("customer_id").distinct().collect()) == [
        "C1~0", "C1~1", "C1~2", "C2~0", "C2~1", "C2~2"]
    decided = spark.createDataFrame([("C1", "sms", "contact", 1.0), ("C1", "email", "contact", 2.0),
                                     ("C2", "sms", "contact", 3.0), ("C3", "sms", "holdout", 9.0)],
                                    "customer_id string, channel string, outcome string, expected_value double")
    seen = decision_scale.checks(decided, {"sms": 1, "email": 5})
    assert seen["per_channel"] == {"sms": {"contacts": 2, "expected_value": 4.0}, "email": {"contacts": 1, "expected_value": 2.0}}
    assert (seen["contacts"], seen["over_capacity"], seen["customers_contacted_twice"]) == (3, {"sms": 2}, 1)
    with pytest.raises(SystemExit):
        decision_scale.parse_args(["--date", "2026-11-20", "--customers", "0"])


# --- bench/model_profiles.py: the models' quality per simulator profile -----------------------------------------
def _validation(n: int = 400, seed: int = 1):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.1).astype(int)
    return pd.DataFrame({"label": label, "probability": np.clip(0.1 + 0.3 * label + rng.normal(0, 0.15, n), 0, 1)})


def test_the_auc_interval_brackets_the_auc_and_is_repeatable():
    import math

    import numpy as np

    from bench import model_profiles
    from models.propensity import roc_auc

    v = _validation()
    y, p = v["label"].to_numpy(), v["probability"].to_numpy()
    low, high = model_profiles.auc_interval(y, p, seed=3)
    assert low < roc_auc(y, p) < high <= 1.0
    assert (low, high) == model_profiles.auc_interval(y, p, seed=3), "seeded: the same interval on a rerun"
    assert all(math.isnan(x) for x in model_profiles.auc_interval(np.zeros(20), np.linspace(0, 1, 20))), \
        "no positive: no interval"


def test_a_model_s_figures_come_from_its_validation_rows_and_its_report():
    from bench import model_profiles
    from models.propensity import quality

    v = _validation()
    q = quality(v["label"].to_numpy(), v["probability"].to_numpy())
    meta = {"metrics": q, "best_iteration": 57, "training_window": {"validation": ["2026-10-21"]},
            "top_features_by_gain": [{"feature": f, "gain": 1.0} for f in ("a", "b", "c", "d")]}
    f = model_profiles.model_figures(meta, v)
    assert f["positives"] == int(v["label"].sum()) and f["rows"] == len(v)
    assert f["roc_auc"] == q["roc_auc"] and f["roc_auc_low"] < f["roc_auc"] < f["roc_auc_high"]
    assert abs(f["top_decile_lift"] - 10 * f["top_decile_share"] / 1.0) < 1e-9, "a tenth of the rows: lift = 10 x share"
    assert f["top_features"] == ["a", "b", "c"] and f["trees"] == 57 and f["validation_snapshot"] == "2026-10-21"


def test_the_top_tenth_shares_out_ties_at_the_cut():
    import numpy as np

    from bench import model_profiles

    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0] * 2)
    assert model_profiles.top_decile(y, np.arange(20)[::-1] / 20) == (5.0, 0.5), "the two best rows: one of two positives"
    lift, share = model_profiles.top_decile(y, np.ones(20))
    assert abs(share - 0.1) < 1e-12 and abs(lift - 1.0) < 1e-12, "all tied: a tenth of the positives, lift 1"


def test_the_profiles_page_shows_each_profile_and_a_failed_one_says_why(tmp_path):
    from bench import model_profiles

    f = {"rows": 400, "positives": 40, "base_rate": 0.1, "roc_auc": 0.8123, "roc_auc_low": 0.75, "roc_auc_high": 0.86,
         "pr_auc": 0.3, "top_decile_lift": 3.2, "top_decile_share": 0.32, "trees": 10, "top_features": ["x", "y"],
         "validation_snapshot": "2026-10-21"}
    result = {"provenance": {"commit": "abc", "dirty": False}, "command": "python bench/model_profiles.py",
              "settings": {"profiles": ["easy", "hard"], "customers": 1000, "days": 105, "end_date": "2026-11-20", "seed": 42},
              "profiles": {"easy": {"models": {"churn": f}, "seconds": {"simulate": 1, "history": 2, "train": 3}},
                           "hard": {"error": "TrainingError: model churn: no positive labels"}}}
    model_profiles.write(result, tmp_path / "out.json")
    md = (tmp_path / "out.md").read_text()
    assert "0.812 (0.750 to 0.860)" in md and "40 (10.00%)" in md and "32%" in md
    churn = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("| churn")][0]
    assert churn[1:4] == ["easy", "0.812 (0.750 to 0.860)", "-"], "no oracle figure: a dash"
    assert "TrainingError: model churn: no positive labels" in md
    assert json.loads((tmp_path / "out.json").read_text())["profiles"]["easy"]["models"]["churn"]["roc_auc"] == 0.8123


def test_the_ingest_workers_ratio_is_one_after_another_over_side_by_side():
    from bench import ingest_workers

    got = ingest_workers.summary({"one_at_a_time": [30.0, 28.0, 31.0], "side_by_side": [20.0, 21.0, 19.0]})
    assert got == {"median_seconds": {"one_at_a_time": 30.0, "side_by_side": 20.0}, "one_at_a_time_over_side_by_side": 1.5}


# ---- each stage in a fresh process (bench/stage_processes.py) ---------------------------------------------

def test_a_stage_process_is_timed_and_its_peak_memory_is_that_of_its_process_tree(tmp_path):
    """A child that holds 200 MB in a grandchild for a second: the peak counts the grandchild, the time the wait."""
    import sys

    from bench import stage_processes

    grandchild = "b = b'x' * (200 * 2**20); import time; time.sleep(1.5)"  # written bytes: resident, not lazily mapped
    child = f"import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-c', {grandchild!r}]))"
    got = stage_processes.run_measured([sys.executable, "-c", child], tmp_path / "log" / "x.log", every=0.1)
    assert got["returncode"] == 0 and got["seconds"] >= 1.5
    assert got["peak_memory_gib"] >= 0.19, got


def test_stage_processes_stop_at_a_failing_stage_naming_its_log(tmp_path, monkeypatch):
    import sys

    from bench import stage_processes

    ran = []

    def command(stage, day):
        ran.append(stage)
        return [sys.executable, "-c", f"import sys; print('stage {stage}'); sys.exit({int(stage == 'tags')})"]

    monkeypatch.setattr(stage_processes, "cpc_command", command)
    with pytest.raises(RuntimeError, match=r"`cpc tags --date 2026-11-20` failed \(exit 1\): see .*tags\.log"):
        stage_processes.run_stages(tmp_path, __import__("datetime").date(2026, 11, 20), ["ingest", "tags", "score"],
                                   progress=False)
    assert ran == ["ingest", "tags"], "nothing runs after the stage that failed"
    assert (tmp_path / "work" / "stage_processes" / "ingest.log").read_text().strip() == "stage ingest"


def test_stage_processes_are_compared_with_the_warm_session_in_the_bench_page():
    from bench import stage_processes

    rows = stage_processes.against_session(
        [{"stage": "ingest", "seconds": 60.0, "peak_memory_gib": 2.5, "returncode": 0},
         {"stage": "tags", "seconds": 45.0, "peak_memory_gib": 3.1, "returncode": 0}], {"ingest": 30.0, "tags": 30.0})
    assert [r["process_over_session"] for r in rows] == [2.0, 1.5]
    md = nightly_bench.markdown({"customers": 1000, "days": 9, "machine": {"cores": 2, "memory_gib": 23.5},
                                 "spark_master": "local[2]", "nightly_seconds": 60.0, "nightly_peak_memory_gib": 5.0,
                                 "complete": True, "stages": [], "phases": {}, "targets": {}, "processes": rows})
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("|")]
    assert ["ingest", "60.0", "30.0", "2.0", "2.5"] in cells
    assert ["all stages", "105.0", "60.0", "1.75", "3.1"] in cells
    assert stage_processes.against_session([{"stage": "export", "seconds": 9.0}], {})[0]["process_over_session"] is None


def test_the_whole_nightly_in_one_fresh_process_is_timed_beside_the_stage_processes(tmp_path, monkeypatch):
    import datetime as dt
    import sys

    from bench import stage_processes

    ran = []

    def command(day):
        ran.append(day)
        return [sys.executable, "-c", "import time; print('every stage'); time.sleep(0.3)"]

    monkeypatch.setattr(stage_processes, "nightly_command", command)
    one = stage_processes.run_one_process(tmp_path, dt.date(2026, 11, 20), progress=False)
    assert ran == [dt.date(2026, 11, 20)] and one["stage"] == "all stages, one process"
    assert one["returncode"] == 0 and one["seconds"] >= 0.3 and "peak_memory_gib" in one
    assert (tmp_path / "work" / "stage_processes" / "all_stages.log").read_text().strip() == "every stage"
    monkeypatch.setattr(stage_processes, "nightly_command", lambda day: [sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(RuntimeError, match=r"failed \(exit 3\): see .*all_stages\.log"):
        stage_processes.run_one_process(tmp_path, dt.date(2026, 11, 20), progress=False)


def test_the_one_process_command_runs_every_stage_as_the_one_task_without_the_summary(monkeypatch):
    """``cpc nightly --date D --no-summary``: ``pipeline.nightly`` (each stage, then its record, as ``run_stage``
    does in the DAG's one task) and no summary (which reads every table and is not part of the night)."""
    import datetime as dt

    from bench import stage_processes
    from jobs import cli
    from jobs.orchestration import pipeline, summary

    ran, summarised = [], []
    monkeypatch.setattr(pipeline, "nightly", lambda day, cfg: ran.append(day))
    monkeypatch.setattr(summary, "summary", lambda day, cfg: summarised.append(day))
    command = stage_processes.nightly_command(dt.date(2026, 11, 20))
    assert command[1:3] == ["-m", "jobs.cli"]
    assert cli.main(command[3:]) == 0
    assert ran == [dt.date(2026, 11, 20)] and summarised == []


def test_eight_tasks_and_one_task_are_compared_in_the_bench_page():
    from bench import stage_processes

    rows = stage_processes.against_session(
        [{"stage": "ingest", "seconds": 60.0, "peak_memory_gib": 2.5, "returncode": 0},
         {"stage": "tags", "seconds": 45.0, "peak_memory_gib": 3.1, "returncode": 0}], {"ingest": 30.0, "tags": 30.0})
    one = stage_processes.one_against_stages(
        {"stage": "all stages, one process", "seconds": 70.0, "peak_memory_gib": 3.4, "returncode": 0}, rows)
    assert one["in_session_seconds"] == 60.0 and one["process_over_session"] == 1.17
    assert one["stage_processes_seconds"] == 105.0 and one["stage_processes_over_one_process"] == 1.5
    md = nightly_bench.markdown({"customers": 1000, "days": 9, "machine": {"cores": 2, "memory_gib": 23.5},
                                 "spark_master": "local[2]", "nightly_seconds": 60.0, "nightly_peak_memory_gib": 5.0,
                                 "complete": True, "stages": [], "phases": {}, "targets": {}, "processes": rows,
                                 "processes_one_process": one})
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("|")]
    assert cells.index(["all stages", "105.0", "60.0", "1.75", "3.1"]) + 1 == cells.index(
        ["all stages, one process", "70.0", "60.0", "1.17", "3.4"])
    assert "every stage in one fresh process" in md
    alone = stage_processes.one_against_stages({"stage": "all stages, one process", "seconds": 70.0}, [
        {"stage": "ingest", "seconds": 60.0}])  # standalone: no warm session to compare with
    assert alone["in_session_seconds"] is None and alone["process_over_session"] is None


def test_the_bench_saves_the_one_process_phase_beside_the_stage_processes(tmp_path, monkeypatch):
    import sys

    from bench import stage_processes

    monkeypatch.setenv("CPC_ROOT", str(tmp_path))
    bench = nightly_bench.NightlyBench(nightly_bench.parse_args(["--customers", "1000", "--days", "9"]), tmp_path)
    bench.result_file = tmp_path / "results" / "nightly_1000x9.json"
    bench.process_rows = stage_processes.against_session(
        [{"stage": "ingest", "seconds": 60.0, "peak_memory_gib": 2.5, "returncode": 0}], {"ingest": 30.0})
    monkeypatch.setattr(stage_processes, "nightly_command", lambda day: [sys.executable, "-c", "print('every stage')"])
    with nightly_bench.PeakMemory() as mem:
        bench.one_process(mem)
    saved = json.loads(bench.result_file.read_text())
    assert saved["processes_one_process"]["stage"] == "all stages, one process"
    assert saved["processes_one_process"]["stage_processes_seconds"] == 60.0
    assert "one process" in saved["phases"] and saved["processes"][0]["stage"] == "ingest"
    assert "| all stages, one process" in bench.result_file.with_suffix(".md").read_text()


def test_standalone_stage_processes_keep_their_keys_and_add_the_one_process(tmp_path, monkeypatch, capsys):
    import sys

    from bench import stage_processes

    (tmp_path / "bench" / "results").mkdir(parents=True)
    monkeypatch.setenv("CPC_ROOT", str(tmp_path / "root"))  # main sets it; restored after the test
    monkeypatch.setattr(stage_processes, "PROJECT", tmp_path)
    monkeypatch.setattr(stage_processes, "cpc_command", lambda stage, day: [sys.executable, "-c", "pass"])
    monkeypatch.setattr(stage_processes, "nightly_command", lambda day: [sys.executable, "-c", "pass"])
    assert stage_processes.main(["--root", str(tmp_path / "root"), "--date", "2026-11-20"]) == 0
    got = json.loads((tmp_path / "bench" / "results" / "stage_processes_root_2026-11-20.json").read_text())
    assert {"root", "date", "stages", "seconds", "peak_memory_gib", "command", "measured_at"} <= set(got)
    assert len(got["stages"]) == 8 and got["one_process"]["stage"] == "all stages, one process"
    assert got["one_process"]["stage_processes_seconds"] == got["seconds"]
    assert "| all stages, one process" in capsys.readouterr().out


# --- bench/decision_history.py: the score stage's reads of past decisions, by layout -----------------------------
def test_decision_history_counts_the_files_a_contact_reader_must_read(tmp_path):
    """file_counts on a real Delta table (written by the deltalake package, no Spark): a file whose outcomes run
    from contact to placement may hold contacts; one of placements only, or of nulls only, may not; a file removed
    by an overwrite no longer counts."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from bench import decision_history

    def write(outcomes, mode="append"):
        write_deltalake(str(tmp_path / "t"), pa.table({"outcome": pa.array(outcomes, pa.string())}), mode=mode)

    write(["contact"] * 3, mode="overwrite")
    for outcomes in (["placement"] * 50, ["contact", "placement"] * 10, ["global_holdout", "placement"] * 15, [None] * 5):
        write(outcomes)
    got = decision_history.file_counts(tmp_path / "t")
    assert got == {"files": 5, "files_with_contact": 2, "rows": 3 + 50 + 20 + 30 + 5, "rows_in_files_with_contact": 3 + 20}
    write(["holdout"] * 7, mode="overwrite")
    assert decision_history.file_counts(tmp_path / "t") == {
        "files": 1, "files_with_contact": 0, "rows": 7, "rows_in_files_with_contact": 0}
    assert decision_history.may_hold(None, None, None, None, "contact"), "no statistics: the file must be read"
    assert not decision_history.may_hold(None, None, 5, 5, "contact"), "a column all null holds no contact"
    assert decision_history.may_hold("contact", "placement", 0, 9, "contact")


def test_decision_history_arguments_and_their_defaults(tmp_path):
    import datetime as dt

    from bench import decision_history

    args = decision_history.parse_args(["--root", str(tmp_path)])
    assert (args.date, args.days, args.repeat, args.keep) == (None, [90, 30, 1], 2, False), "largest first"
    assert args.out == decision_history.RESULT and args.out.name == "decision_history.json"
    assert args.scratch == tmp_path / "scratch" / "decision_history"
    args = decision_history.parse_args(["--root", "r", "--date", "2026-11-20", "--days", "7", "30", "7",
                                        "--repeat", "3", "--out", "x.json", "--scratch", "s", "--keep"])
    assert (args.date, args.days, args.repeat, str(args.out), str(args.scratch), args.keep) == (
        dt.date(2026, 11, 20), [30, 7], 3, "x.json", "s", True)
    for bad in (["--root", "r", "--days", "0"], ["--root", "r", "--repeat", "0"], ["--days", "1"]):
        with pytest.raises(SystemExit):
            decision_history.parse_args(bad)


def test_decision_history_scratch_lake_links_every_table_but_the_decisions(tmp_path):
    from bench import decision_history

    root = tmp_path / "root"
    for table in ("bronze/orders", "bronze/contacts", "gold/cpc_decisions", "gold/customer_tags", "silver/customer_day"):
        (root / "lake" / table / "_delta_log").mkdir(parents=True)
    scratch = decision_history.scratch_lake(root, root / "scratch" / "dh")
    lake = scratch / "lake"
    assert sorted(str(p.relative_to(lake)) for p in lake.glob("*/*")) == [
        "bronze/contacts", "bronze/orders", "gold/customer_tags", "silver/customer_day"]
    assert all(p.is_symlink() for p in lake.glob("*/*")) and not (lake / "gold").is_symlink()
    assert (lake / "bronze" / "orders").resolve() == (root / "lake" / "bronze" / "orders").resolve()
    from jobs.platform.config import Paths

    path = decision_history.fresh_table(Paths(scratch), scratch)
    assert path == lake / "gold" / "cpc_decisions" and not path.exists()
    assert decision_history.scratch_lake(root, scratch) == scratch, "its own scratch lake is made afresh"
    for bad in (root, tmp_path, root / "lake" / "x"):
        with pytest.raises(SystemExit):
            decision_history.check_scratch(root, bad)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("not ours")
    with pytest.raises(SystemExit, match="not made by this script"):
        decision_history.check_scratch(root, tmp_path / "other")


def test_decision_history_times_every_repeat_of_each_reader_and_keeps_the_minimum():
    from bench import decision_history

    ticks = iter([0.0, 3.0, 3.0, 4.0, 10.0, 12.0, 12.0, 12.5])  # history 3 then 2 s; scales 1 then 0.5 s
    calls = []
    got = decision_history.time_readers({"history": lambda: calls.append("h"), "acceptance_scales": lambda: calls.append("a")},
                                        2, clock=lambda: next(ticks))
    assert calls == ["h", "a", "h", "a"], "reader by reader within a repeat"
    assert got == {"history": {"seconds": [3.0, 2.0], "min": 2.0}, "acceptance_scales": {"seconds": [1.0, 0.5], "min": 0.5}}
    ticks = iter([0.0, 1.0, 5.0, 5.5])
    got = decision_history.time_readers({"evaluate_night": lambda: calls.append("e")}, 2, clock=lambda: next(ticks),
                                        before={"evaluate_night": lambda: calls.append("night before")})
    assert calls[4:] == ["night before", "e", "night before", "e"] and got["evaluate_night"]["seconds"] == [1.0, 0.5], \
        "the night before runs before each repeat, untimed"


# --- bench/ingest_parse.py: the parse's parts timed apart -------------------------------------------------------
def test_ingest_parse_arguments_and_its_check_groups_are_the_parse_s_checks(tmp_path, monkeypatch):
    from pathlib import Path

    from bench import ingest_parse
    from jobs.stages.ingest import transform
    from schemas import FILES

    args = ingest_parse.parse_args([])
    assert (args.root, args.kind, args.repeat, args.out) == (Path("var"), "billing", 2, None)
    with pytest.raises(SystemExit):
        ingest_parse.parse_args(["--repeat", "0"])
    for kind in ("billing", "usage", "crm_profile"):
        groups = ingest_parse.check_groups(FILES[kind])
        assert [c for g in groups.values() for c in g] == transform._field_checks(FILES[kind]), \
            f"{kind}: the groups, in order, are every check the parse makes"
    monkeypatch.setenv("CPC_ROOT", "put back after the test")  # main sets it to its root
    with pytest.raises(SystemExit, match="no billing_"):
        ingest_parse.main(["--root", str(tmp_path)])
    with pytest.raises(SystemExit, match="not a file kind"):
        ingest_parse.main(["--root", str(tmp_path), "--kind", "nope"])


def test_ingest_parse_reads_the_driver_log_written_during_a_part(tmp_path):
    from bench import ingest_parse, tags_breakdown

    log = tmp_path / "driver.log"
    log.write_text("before: Generated method too long to be JIT compiled\n")
    at = tags_breakdown.log_size(log)()
    with log.open("a") as f:
        f.write("INFO CodeGenerator: Code generated in 12.5 ms\nINFO CodeGenerator: Generated method too long to be JIT compiled\n")
    got = ingest_parse.log_since(log, at)
    assert got == {"log": {"method_too_long_for_jit": 1, "code_generated": 1}, "code_generated_ms": 12.5}, \
        "only what was written after the part began"
    assert ingest_parse.log_since(None, None) == {} and ingest_parse.log_since(tmp_path / "none", 0) == {}


def test_night_fixed_cost_counts_each_stage_s_delta_writes_and_puts_the_lake_back():
    """bench/night_fixed_cost.py: the writes are counted for the stage running, failed ones too, and the lake's
    functions are the originals again after the run; the table adds a night's row per repeat."""
    from types import SimpleNamespace

    from bench import night_fixed_cost as nfc

    def broken(*a, **k):
        raise OSError("disk full")

    fake = SimpleNamespace(replace=lambda *a, **k: "done", append=broken)
    with nfc.WriteCounter(fake) as counter:
        counter.stage = "score"
        assert fake.replace("df", "paths", "gold.cpc_decisions", None) == "done"
        with pytest.raises(OSError):
            fake.append("df", "paths", "ops.run_log")
        counter.stage = "export"
        fake.replace()
    assert counter.calls == {"score": 2, "export": 1}
    assert fake.append is broken and fake.replace() == "done"
    rows = [{"stage": "ingest", "seconds": 2.5, "spark_jobs": 10, "delta_writes": 2, "write_seconds": 1.0},
            {"stage": "tags", "seconds": 1.25, "spark_jobs": 5, "delta_writes": 1, "write_seconds": 0.5}]
    lines = nfc.table([rows]).splitlines()
    assert len(lines) == 5 and [c.strip() for c in lines[-1].split("|")[1:7]] == ["1", "night", "3.75", "15", "3", "1.5"]
    slower = [{**r, "seconds": r["seconds"] * 3, "spark_jobs": r["spark_jobs"] + 1} for r in rows]
    faster = [{**r, "seconds": r["seconds"] / 5} for r in rows]
    median = nfc.median_night([slower, rows, faster])
    assert [(m["stage"], m["seconds"], m["spark_jobs"]) for m in median] == [("ingest", 2.5, 10), ("tags", 1.25, 5), ("night", 3.75, 15)]
    assert len(nfc.table([slower, rows, faster]).splitlines()) == 2 + 3 * 3 + 3, "three repeats and the median's rows"


def test_night_fixed_cost_refuses_too_short_an_operator(capsys):
    from bench import night_fixed_cost as nfc

    assert nfc.parse_args([]).customers == 300
    with pytest.raises(SystemExit):
        nfc.parse_args(["--days", "2"])
    assert "--days at least 3" in capsys.readouterr().err


def test_validation_formats_adds_up_the_kinds_and_runs_basic_once_as_before(monkeypatch):
    """bench/validation_formats.py: a kind's medians and ratio, the night's total over the kinds, a differing
    summary reported as such; its "as before" way runs the suite once with BASIC, even when it fails."""
    from types import SimpleNamespace

    from bench import validation_formats as vf
    from jobs.stages.ingest import quality

    a = vf.summary("usage", 300, [2.0, 2.4, 2.2], [0.9, 1.1, 1.0], True)
    b = vf.summary("optouts", 3, [1.0], [0.5], False)
    assert (a["basic_median"], a["now_median"], a["basic_over_now"]) == (2.2, 1.0, 2.2)
    assert vf.totals([a, b]) == {"basic_seconds": 3.2, "now_seconds": 1.5, "basic_over_now": 2.13, "same_summary": False}
    asked = []
    failing = SimpleNamespace(success=False, results=[], statistics={"evaluated_expectations": 3})

    def run(batch_parameters, result_format):
        asked.append(result_format)
        return failing

    monkeypatch.setattr(quality, "_gx_validation", lambda kind: SimpleNamespace(run=run))
    assert vf.one_basic_run("usage", None) == {"suite": "usage", "success": False, "evaluated": 3, "failed": []}
    assert asked == [quality.RESULT_FORMAT]
    with pytest.raises(SystemExit):
        vf.parse_args(["--date", "2026-11-20", "--repeat", "0"])


def test_night_calls_names_the_pipeline_s_frames_and_keeps_the_longest_waits():
    """bench/night_calls.py: a call's site is the innermost two frames of jobs/ (pyspark's own frames skipped),
    a call from no such frame is counted apart; the counter adds by site and by stage; the top is by seconds."""
    from bench import night_calls as nc

    root = "/repo"
    frames = [("/venv/pyspark/sql/dataframe.py", 10, "collect"), ("/repo/jobs/stages/export.py", 157, "write_list"),
              ("/repo/bench/x.py", 3, "main"), ("/repo/jobs/stages/export.py", 175, "_publish"),
              ("/repo/jobs/orchestration/registry.py", 74, "_export")]
    assert nc.site_of(frames, root) == "jobs/stages/export.py:157(write_list) <- jobs/stages/export.py:175(_publish)"
    assert nc.site_of(frames[:2], root, depth=1) == "jobs/stages/export.py:157(write_list)"
    assert nc.site_of([("/venv/py4j/java_gateway.py", 1, "__del__")], root) == nc.OUTSIDE
    counter = nc.CallCounter(root)
    counter.stage = "export"
    counter.add(frames, 0.5)
    counter.add(frames, 0.25)
    counter.stage = "score"
    counter.add([("/repo/jobs/stages/cpc/__init__.py", 151, "run")], 2.0)
    assert counter.stages == {"export": [2, 0.75], "score": [1, 2.0]}
    assert nc.top(counter.sites, 1) == [{"site": "jobs/stages/cpc/__init__.py:151(run)", "calls": 1, "seconds": 2.0}]
    assert [r["calls"] for r in nc.top(counter.sites, 5)] == [1, 2]
    import py4j.clientserver as cs

    orig = cs.ClientServerConnection.send_command
    with nc.CallCounter(root):
        assert cs.ClientServerConnection.send_command is not orig
    assert cs.ClientServerConnection.send_command is orig


def test_spark_jobs_tells_a_log_s_jobs_by_kind_and_by_the_stage_they_ran_in(tmp_path):
    """bench/spark_jobs.py over a rolling event log's two files: each job's kind from Delta's description, the
    stage names or the call site; a job belongs to the stage whose window holds its submission; a job outside
    every window is counted apart and left out of the total; a compressed log is refused by name."""
    import json

    from bench import spark_jobs as sj

    def start(job, ms, desc="", names=("x at Y.scala:1",), site=""):
        return json.dumps({"Event": "SparkListenerJobStart", "Job ID": job, "Submission Time": ms,
                           "Stage Infos": [{"Stage Name": n} for n in names],
                           "Properties": {"spark.job.description": desc, "callSite.short": site}})

    def end(job, ms):
        return json.dumps({"Event": "SparkListenerJobEnd", "Job ID": job, "Completion Time": ms})

    folder = tmp_path / "eventlog_v2_local-1"
    folder.mkdir()
    (folder / "events_1_local-1").write_text("\n".join([
        json.dumps({"Event": "SparkListenerApplicationStart"}),
        start(0, 1_000, "Delta: ingest: Compute snapshot for version: 3"), end(0, 1_500),
        start(1, 2_000, "Delta: Filtering files for query"), end(1, 2_250),
        start(2, 3_000, names=("save at NativeMethodAccessorImpl.java:0",)), end(2, 4_000),
    ]) + "\n")
    (folder / "events_2_local-1").write_text("\n".join([
        start(3, 11_000, names=("$anonfun$withThreadLocalCaptured$1 at CompletableFuture.java:1768",)), end(3, 11_100),
        start(4, 12_000, site="collect at /repo/jobs/stages/cpc/__init__.py:183"), end(4, 12_200),
        start(5, 13_000, names=("localCheckpoint at NativeMethodAccessorImpl.java:0",)), end(5, 13_500),
        start(6, 30_000, names=("$anonfun$recordDeltaOperationInternal$1 at DatabricksLogging.scala:128",)), end(6, 30_100),
    ]) + "\n")
    got = sj.jobs(sj.log_lines(tmp_path))
    assert [j["kind"] for j in got] == [sj.KINDS[0], sj.KINDS[1], sj.KINDS[3], sj.KINDS[5], sj.KINDS[6], sj.KINDS[4],
                                        sj.KINDS[2]]
    stages = sj.by_stage(got, [("ingest", 0.5, 5.0), ("score", 10.0, 20.0)])
    assert list(stages) == ["ingest", "score", sj.OUTSIDE]
    assert stages["ingest"][sj.KINDS[0]] == {"jobs": 1, "seconds": 0.5}
    assert stages["ingest"][sj.KINDS[3]] == {"jobs": 1, "seconds": 1.0}
    assert stages["score"][sj.KINDS[6]] == {"jobs": 1, "seconds": 0.2}
    assert stages[sj.OUTSIDE][sj.KINDS[2]]["jobs"] == 1
    total = sj.total(stages)
    assert sum(v["jobs"] for v in total.values()) == 6 and total[sj.KINDS[2]]["jobs"] == 0
    assert "| total" in sj.markdown(stages) and "| all" in sj.markdown(sj.by_stage(got))
    (folder / "events_3_local-1.zstd").write_bytes(b"\x28\xb5")
    with pytest.raises(ValueError, match="compress=false"):
        list(sj.log_lines(tmp_path))


def test_write_result_adds_what_every_result_file_records(tmp_path):
    """bench/nightly_bench.py's write_result: the figures first, then the Spark master, the machine, the command
    that reproduces the result, when and the commit; written as JSON where asked, folders made."""
    from types import SimpleNamespace

    out = tmp_path / "deep" / "r.json"
    got = nightly_bench.write_result(out, {"seconds": 1.5}, SimpleNamespace(spark_master="local[2]"), "bench/x.py",
                                     ["--date", "2026-11-20"], {"commit": "abc", "dirty": False})
    assert json.loads(out.read_text()) == got
    assert list(got)[:4] == ["seconds", "spark_master", "machine", "command"] and list(got)[-2:] == ["commit", "dirty"]
    assert got["command"] == ".venv/bin/python bench/x.py --date 2026-11-20" and got["machine"]["cores"] >= 1


def test_setup_install_times_the_makefile_s_uv_against_pip_with_no_cache(monkeypatch, tmp_path):
    """bench/setup_install.py installs uv at the Makefile's UV_VERSION, both ways without a download cache (a
    fresh machine), taking turns, and says whether the two environments hold the same versions."""
    from bench import setup_install

    makefile = (setup_install.ROOT / "Makefile").read_text()
    assert "'uv==$(UV_VERSION)'" in makefile and f"UV_VERSION ?= {setup_install.uv_version()}\n" in makefile
    uv = setup_install.commands("uv", tmp_path / "python", "9.9")
    assert uv[0][-1] == "uv==9.9" and "--no-cache" in uv[1] and uv[1][-1].endswith("[dev]")
    assert all("--no-cache-dir" in cmd for cmd in setup_install.commands("pip", tmp_path / "python", "9.9"))
    order = []
    monkeypatch.setattr(setup_install, "one_install", lambda way, where, uv: (order.append(way) or (10.0 if way == "pip" else 5.0), ["a==1"]))
    out = setup_install.main(["--repeat", "2", "--out", str(tmp_path / "r.json")])
    assert order == ["pip", "uv", "uv", "pip"], "which goes first alternates"
    assert (out["uv_over_pip"], out["same_versions"], out["uv_version"]) == (0.5, True, setup_install.uv_version())
    assert json.loads((tmp_path / "r.json").read_text())["commit"] == out["commit"]
    assert out["command"].startswith(".venv/bin/python bench/setup_install.py --repeat 2") and "spark_master" not in out


def test_jvm_start_times_with_and_without_the_archive_and_puts_it_back(monkeypatch, tmp_path):
    """bench/jvm_start.py moves the archive aside only for the runs without it, alternates which goes first, and
    says how many processes repay the build."""
    from bench import jvm_start
    from jobs.platform import jvm

    archive = tmp_path / "spark.jsa"
    archive.write_text("x")
    monkeypatch.setattr(jvm, "archive_path", lambda: archive)
    monkeypatch.setattr(jvm_start, "build_seconds", lambda scratch: 40.0)
    seen = []

    def one(scratch):
        seen.append(archive.exists())
        return {"session": 1.0, "total": 2.0, "wall": 10.0 if archive.exists() else 14.0}
    monkeypatch.setattr(jvm_start, "one_process", one)
    out = jvm_start.main(["--repeat", "2", "--out", str(tmp_path / "r.json")])
    assert seen == [True, False, False, True] and archive.exists(), "alternating, and the archive is back"
    assert (out["build_seconds"], out["saved_per_process"], out["processes_to_repay_the_build"]) == (40.0, 4.0, 10.0)


# --- bench/nightly_bench.py: the step against --full, and a stopped run continued ---------------------------------
def test_the_step_s_tags_are_compared_with_full_s_for_every_tag_and_customer(spark, tmp_path):
    """Two versions of one date of gold.customer_tags: equal values give no difference; a changed double's last
    bit, a null against a value, a customer on one side only and a value moved to the next column are each found."""
    import datetime as dt

    from jobs.platform import lake
    from jobs.platform.config import Paths

    paths, day = Paths(tmp_path), dt.date(2026, 11, 20)
    schema = "customer_id string, snapshot_date date, arpu_30d double, seg string"
    rows = [("c1", day, 0.1 + 0.2, "a"), ("c2", day, 1.0, None), ("c3", day, 2.0, "b")]
    lake.replace(spark.createDataFrame(rows, schema), paths, nightly_bench.TAGS, None)
    step = lake.version(spark, paths, nightly_bench.TAGS)
    lake.replace(spark.createDataFrame(rows, schema), paths, nightly_bench.TAGS, None)
    same = nightly_bench.step_against_full(spark, paths, day, step)
    assert (same["differences"], same["customers"], same["columns"]) == (0, 3, 2)
    changed = [("c1", day, 0.3, "a"), ("c2", day, 1.0, "x"), ("c4", day, 2.0, "b")]
    lake.replace(spark.createDataFrame(changed, schema), paths, nightly_bench.TAGS, None)
    got = nightly_bench.step_against_full(spark, paths, day, step)
    found = {(e["customer_id"], e["name"]) for e in got["examples"]}
    assert got["differences"] == 4 and found == {("c1", "arpu_30d"), ("c2", "seg"), ("c3", "(customer)"), ("c4", "(customer)")}
    assert got["customers_differing"] == 4
    moved, two = Paths(tmp_path / "moved"), "customer_id string, snapshot_date date, a string, b string"
    lake.replace(spark.createDataFrame([("c1", day, "x", None)], two), moved, nightly_bench.TAGS, None)
    first = lake.version(spark, moved, nightly_bench.TAGS)
    lake.replace(spark.createDataFrame([("c1", day, None, "x")], two), moved, nightly_bench.TAGS, None)
    assert nightly_bench.step_against_full(spark, moved, day, first)["differences"] == 2, "a value moved to the next column"
    md = nightly_bench.markdown({"customers": 3, "days": 9, "machine": {"cores": 2, "memory_gib": 23.5},
                                 "spark_master": "local[2]", "nightly_seconds": 1.0, "nightly_peak_memory_gib": 1.0,
                                 "complete": True, "stages": [], "phases": {}, "targets": {},
                                 "incremental_against_full": got})
    assert "**4 values differ** (3 customers in the step, 3 in the reference)" in md


def test_a_stopped_run_is_continued_from_the_phases_it_recorded(tmp_path, monkeypatch, capsys):
    from jobs.platform.provenance import git_state

    monkeypatch.setenv("CPC_ROOT", str(tmp_path))

    def bench(argv=("--customers", "1000", "--days", "9", "--resume")):
        b = nightly_bench.NightlyBench(nightly_bench.parse_args(list(argv)), tmp_path)
        b.result_file = tmp_path / "results" / "nightly_1000x9.json"
        return b

    with pytest.raises(SystemExit, match="no run of 1000x9 to continue"):
        bench().resume()
    first = bench()
    first.stages = [{"phase": "day 1", "stage": "ingest", "seconds": 5.0, "count": None, "unit": "", "per_second": None},
                    {"phase": "nightly", "stage": "tags", "seconds": 3.0, "count": None, "unit": "", "per_second": None}]
    first.phases = {p: {"seconds": 1.0, "peak_memory_gib": 0.1} for p in ("simulate", "day 1", "history", "state", "nightly")}
    first.runs[0]["phases"] = list(first.phases)
    first.ge, first.nightly_tags_version = {"nightly": {"seconds": 2.0, "validation_seconds": 0.5}}, 7
    first.save(first.build())
    (tmp_path / "lake").mkdir()
    again = bench()
    assert again.resume() == set(first.phases)
    assert (again.stages, again.phases, again.ge, again.nightly_tags_version) == (first.stages, first.phases, first.ge, 7)
    assert [r["phases"] for r in again.runs] == [list(first.phases), []] and again.code == git_state()
    assert "resuming after simulate, day 1, history, state, nightly" in capsys.readouterr().out
    resumed = again.build()
    assert "Resumed (`--resume`), the phases by process: 1. " in nightly_bench.markdown(resumed)
    assert resumed["command"].endswith("--days 9") and resumed["ratios"]["ge_share_of_ingest"] == 0.25
    assert nightly_bench.command(nightly_bench.parse_args(["--customers", "5", "--seed", "7", "--no-processes"])) == (
        ".venv/bin/python bench/nightly_bench.py --customers 5 --days 90 --seed 7 --no-processes")
    with pytest.raises(SystemExit, match="is of another run"):
        bench(["--customers", "1000", "--days", "9", "--seed", "7", "--resume"]).resume()
    with pytest.raises(SystemExit, match="is of another run"):
        bench(["--customers", "1000", "--days", "9", "--per-tag-sample", "0", "--resume"]).resume()
    monkeypatch.setattr(nightly_bench, "code_fingerprint", lambda: "another")
    with pytest.raises(SystemExit, match=r"the pipeline's code changed since the first process .*files on disk differ"):
        bench().resume()
    older = json.loads(first.result_file.read_text())  # a first process that recorded no fingerprint: refused
    del older["runs"][0]["code_fingerprint"]
    first.result_file.write_text(json.dumps(older))
    with pytest.raises(SystemExit, match=r"no fingerprint recorded\): start again without --resume"):
        bench().resume()


def test_the_pipeline_s_code_is_fingerprinted_on_disk(tmp_path):
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "a.py").write_text("x = 1\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("notes\n")
    before = nightly_bench.code_fingerprint(tmp_path)
    (tmp_path / "docs" / "a.md").write_text("more notes\n")  # not the pipeline's code
    (tmp_path / "jobs" / "__pycache__").mkdir()
    (tmp_path / "jobs" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"compiled")
    assert nightly_bench.code_fingerprint(tmp_path) == before
    (tmp_path / "jobs" / "b.py").write_text("y = 2\n")  # a new file, committed or not
    assert nightly_bench.code_fingerprint(tmp_path) != before
    (tmp_path / "jobs" / "b.py").unlink()
    (tmp_path / "jobs" / "a.py").write_text("x = 2\n")
    assert nightly_bench.code_fingerprint(tmp_path) != before
    (tmp_path / "jobs" / "a.py").write_text("x = 1\n")
    assert nightly_bench.code_fingerprint(tmp_path) == before, "the same files give the same fingerprint"


def test_a_second_run_on_the_same_bench_root_is_refused_while_the_first_goes_on(tmp_path, monkeypatch):
    import subprocess
    import sys
    import time

    monkeypatch.setenv("CPC_BENCH_ROOT", str(tmp_path))
    monkeypatch.setenv("CPC_ROOT", str(tmp_path / "1000x9"))  # main sets it; restored after the test
    script = tmp_path / "nightly_bench.py"  # a process whose command line is the bench's, that only waits
    script.write_text("import time\ntime.sleep(60)\n")
    first = subprocess.Popen([sys.executable, str(script), "--customers", "1000", "--days", "9"])
    try:
        for _ in range(50):  # until its command line is readable
            if nightly_bench.running_elsewhere(tmp_path / "1000x9"):
                break
            time.sleep(0.1)
        assert nightly_bench.running_elsewhere(tmp_path / "1000x9") == [first.pid]
        assert nightly_bench.running_elsewhere(tmp_path / "2000x9") == [], "another size is another root"
        assert nightly_bench.running_elsewhere(tmp_path / "elsewhere" / "1000x9") == [], "another bench root"
        with pytest.raises(SystemExit, match=f"a run of 1000x9 is still going .*pid {first.pid}"):
            nightly_bench.main(["--customers", "1000", "--days", "9", "--resume"])
    finally:
        first.kill()
        first.wait()
