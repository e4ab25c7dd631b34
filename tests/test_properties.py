"""Property-based tests (hypothesis) for the file parser and the tag language."""

from __future__ import annotations

import datetime as dt
import gzip
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.platform.errors import CatalogueError
from jobs.platform.expressions import ALLOWED_FUNCTIONS, SQL_WORDS, identifiers
from jobs.stages.ingest import parse
from jobs.stages.tags import load_catalogue
from schemas import APP_CATEGORIES, DELIMITER, FILES

DAY = dt.date(2026, 11, 20)
USAGE = FILES["usage"]

# ---- the tag language ------------------------------------------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9_]{2,15}", fullmatch=True)


@given(st.text(max_size=200))
def test_identifiers_never_crashes(text):
    try:
        cols, funcs = identifiers(text)
    except CatalogueError:
        return  # refused syntax is a clear error, not a crash
    assert all(isinstance(c, str) for c in cols | funcs)


@given(names.filter(lambda n: n not in ALLOWED_FUNCTIONS and n not in SQL_WORDS))
@settings(max_examples=60)
def test_any_function_outside_the_allow_list_is_refused(fn):
    entry = {"id": "x_prop", "family": "value", "type": "boolean", "expr": f"{fn}(val_arpu_30d) > 0",
             "name_en": "p", "name_zh": "p", "description": "p"}
    with pytest.raises(CatalogueError, match="x_prop"):
        load_catalogue(extra_tags=[entry])


@given(st.text(alphabet=st.characters(blacklist_characters="'\\", blacklist_categories=("Cs",)), max_size=60))
def test_string_literals_hide_nothing_and_add_nothing(text):
    cols, funcs = identifiers(f"soc_city = '{text}'")
    assert cols == {"soc_city"} and funcs == set()


@given(st.sampled_from(["reflect", "java_method", "try_reflect"]), st.sampled_from(["", " ", "\t", "\n  "]))
def test_reflection_is_refused_however_spaced(fn, space):
    entry = {"id": "x_refl", "family": "value", "type": "boolean", "expr": f"{fn}{space}('java.lang.System', 'exit', 0) is null",
             "name_en": "p", "name_zh": "p", "description": "p"}
    with pytest.raises(CatalogueError, match="x_refl: function"):
        load_catalogue(extra_tags=[entry])


# ---- the file parser ------------------------------------------------------------------------------------

def _num(lo: float, hi: float):
    return st.floats(min_value=lo, max_value=hi, allow_nan=False).map(lambda x: f"{round(x, 1)}")


valid_usage_row = st.tuples(
    st.integers(1, 999_999_999).map(lambda i: f"C{i:09d}"), st.just(DAY.isoformat()),
    _num(0, 1440), _num(0, 1440), st.integers(0, 2000).map(str), st.integers(0, 10000).map(str), _num(0, 100000), _num(0, 1440),
    *[_num(0, 100000) for _ in APP_CATEGORIES],  # data by application category (MB)
)
garbage_field = st.text(alphabet=string.printable.replace("|", "").replace("\n", "").replace("\r", ""), max_size=12)


def _file(tmp_path, rows: list[str], folder: str = "f0"):
    path = tmp_path / folder / USAGE.file_name(DAY)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(gzip.compress(("\n".join([DELIMITER.join(USAGE.names), *rows]) + "\n").encode(), mtime=0))
    return path


def _files(tmp_path, files: list[list[str]]):
    """One delivery file per list of lines (the same name in folders of their own), parsed in one Spark job."""
    return [_file(tmp_path, lines, f"f{i}") for i, lines in enumerate(files)]


# Each example is up to four files parsed together: as many files as one file an example, a third of the Spark jobs.
@given(st.lists(valid_usage_row, min_size=1, max_size=100, unique_by=lambda r: r[0]), st.integers(1, 4))
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_valid_rows_parse_clean_and_round_trip(spark, tmp_path, rows, n_files):
    paths = _files(tmp_path, [[DELIMITER.join(r) for r in rows[i::n_files]] for i in range(n_files)])
    out = parse(spark, USAGE, paths).select("customer_id", "voice_out_min", "out_calls", "data_mb", "_reasons").collect()
    assert len(out) == len(rows)
    by_id = {r["customer_id"]: r for r in out}
    for r in rows:
        got = by_id[r[0]]
        assert got["_reasons"] == []
        assert (got["voice_out_min"], got["out_calls"], got["data_mb"]) == (float(r[2]), int(r[4]), float(r[6]))


@given(st.lists(st.lists(st.lists(garbage_field, min_size=1, max_size=10), min_size=1, max_size=25), min_size=1, max_size=4))
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_garbage_never_crashes_and_no_row_is_lost(spark, tmp_path, files):
    header = DELIMITER.join(USAGE.names)
    files = [[x for x in (DELIMITER.join(fields) for fields in rows) if x and x != header] for rows in files]
    files = [lines for lines in files if lines]
    if not files:
        return
    out = parse(spark, USAGE, _files(tmp_path, files)).select("value", "_reasons").collect()
    assert sorted(r["value"] for r in out) == sorted(x for lines in files for x in lines), "every line comes back, good or with reasons"
    for r in out:
        fields = r["value"].split(DELIMITER)
        if len(fields) != len(USAGE.names):
            assert any("fields" in reason for reason in r["_reasons"])


def test_files_of_the_same_name_in_two_folders_are_numbered_apart(spark, tmp_path):
    """Lines are numbered per file path: a same-named file from another folder has its own header (line 1),
    not a data row, and its rows their own line numbers (found by the many-files property above)."""
    row = DELIMITER.join(["C000000001", DAY.isoformat(), *["1"] * (len(USAGE.names) - 2)])
    out = parse(spark, USAGE, _files(tmp_path, [[row], [row.replace("C000000001", "C000000002")]])).select("customer_id", "_line").collect()
    assert sorted((r["customer_id"], r["_line"]) for r in out) == [("C000000001", 2), ("C000000002", 2)]
