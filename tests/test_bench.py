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
