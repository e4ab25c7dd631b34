"""Data quality: the Great Expectations suites in ``expectations/`` decide what a good row and a good file are.

One suite per input file kind (``expectations/<kind>.json``, Great Expectations 1.x suite format).
- Row-level expectations (not null, between, in set, match regex) are also compiled into Spark column
  expressions, so that every failing row is quarantined with the expectation it broke as its reason: the
  suite is the single place those rules are written.
- The suite itself is run by Great Expectations on the parsed DataFrame; its result is stored in the ingest
  ledger beside the file.
- ``meta.max_bad_row_share`` says how many bad rows a file may have before it is rejected whole.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.platform.config import PROJECT_DIR
from jobs.platform.errors import SuiteError
from jobs.platform.expressions import quoted, sql_literal, sql_string

EXPECTATIONS_DIR = PROJECT_DIR / "expectations"

ROW_LEVEL = {
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_match_regex",
}


VOLUME_DEFAULTS = {"history": 14, "min_history": 5, "min_median": 100, "refuse_below": 0.1, "warn_below": 0.5,
                   "warn_above": 3.0, "refuse_above": 50.0}


@dataclass(frozen=True)
class Suite:
    kind: str
    raw: dict[str, Any]

    @property
    def expectations(self) -> list[dict[str, Any]]:
        return self.raw.get("expectations", [])

    @property
    def meta(self) -> dict[str, Any]:
        return self.raw.get("meta", {})

    @property
    def max_bad_row_share(self) -> float:
        return float(self.meta.get("max_bad_row_share", 0.05))

    @property
    def min_bad_rows(self) -> int:
        """Bad rows a file may always have: below it a small file is judged by a count, not a share (1 bad row of
        18 is 5.6%, and refusing the file would lose 17 good ones)."""
        return int(self.meta.get("min_bad_rows", 10))

    @property
    def keep_good_rows(self) -> bool:
        """Refuse the file for its bad rows only when it has no good one (opt-outs: losing a good row harms a
        customer); the bad rows are still quarantined and reported."""
        return bool(self.meta.get("keep_good_rows", False))

    def too_many_bad(self, bad: int, received: int) -> bool:
        """Whether a file is refused for its bad rows; a kind that keeps good rows is refused only when it has
        none (every row bad: a broken delivery, and nothing is lost by refusing it)."""
        if self.keep_good_rows:
            return received > 0 and bad == received
        return bad > max(self.max_bad_row_share * received, self.min_bad_rows)

    @property
    def volume(self) -> dict[str, float] | None:
        """The day's rows against the median of recent accepted deliveries (``meta.volume``; null: no check):
        ``history`` deliveries looked at, checked once there are ``min_history`` with a median of ``min_median``
        rows or more; below ``refuse_below`` or above ``refuse_above`` times the median the file is refused, below
        ``warn_below`` or above ``warn_above`` it is accepted with a warning."""
        if "volume" in self.meta and self.meta["volume"] is None:
            return None
        return {**VOLUME_DEFAULTS, **{k: float(v) for k, v in (self.meta.get("volume") or {}).items()}}

    def row_rules(self) -> list[tuple[str, dict[str, Any]]]:
        """(reason, expectation) for every row-level expectation; the reason names the rule."""
        out = []
        for e in self.expectations:
            if e["type"] in ROW_LEVEL:
                kw = e["kwargs"]
                short = e["type"].removeprefix("expect_column_values_to_")
                detail = {
                    "be_between": f"[{kw.get('min_value', '')}, {kw.get('max_value', '')}]",
                    "be_in_set": "",
                    "match_regex": f" {kw.get('regex')}",
                }.get(short, "")
                out.append((f"{kw['column']}: {short.replace('_', ' ')}{detail}".strip(), e))
        return out


@functools.cache
def load_suite(kind: str, folder: Path = EXPECTATIONS_DIR) -> Suite:
    path = folder / f"{kind}.json"
    if not path.exists():
        raise SuiteError(f"no expectation suite for file kind {kind!r}: {path} is missing")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{path}: not valid JSON: {exc}") from exc
    for e in raw.get("expectations", []):
        if "type" not in e or "kwargs" not in e:
            raise SuiteError(f"{path}: every expectation needs 'type' and 'kwargs': {e}")
    return Suite(kind, raw)


def violation(expectation: dict[str, Any]) -> str:
    """SQL text that is true where a row breaks a row-level expectation (nulls pass, as in GE, except for the
    not-null expectation itself)."""
    kw = expectation["kwargs"]
    col = quoted(kw["column"])
    kind = expectation["type"]
    if kind == "expect_column_values_to_not_be_null":
        return f"{col} IS NULL"
    if kind == "expect_column_values_to_be_between":
        conds = []
        if kw.get("min_value") is not None:
            conds.append(f"{col} < {sql_literal(kw['min_value'])}")
        if kw.get("max_value") is not None:
            conds.append(f"{col} > {sql_literal(kw['max_value'])}")
        return f"({' OR '.join(conds)}) AND {col} IS NOT NULL"
    if kind == "expect_column_values_to_be_in_set":
        values = list(kw["value_set"])
        if not values:  # nothing is in an empty set: every value breaks it
            return f"{col} IS NOT NULL"
        return f"NOT ({col} IN ({', '.join(sql_literal(v) for v in values)})) AND {col} IS NOT NULL"
    if kind == "expect_column_values_to_match_regex":
        return f"NOT (CAST({col} AS STRING) RLIKE {sql_string(kw['regex'])}) AND {col} IS NOT NULL"
    raise SuiteError(f"{kind} is not a row-level expectation")


@functools.cache
def _gx_validation(kind: str):
    """A Great Expectations validation definition for one suite (an ephemeral context, built once)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.core import ExpectationSuite

    for name in ("great_expectations", "great_expectations.core", "great_expectations.expectations"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ctx = _gx_context()
    suite_json = dict(load_suite(kind).raw)
    suite = ctx.suites.add(ExpectationSuite(name=suite_json["name"], expectations=suite_json["expectations"], meta=suite_json.get("meta")))
    source = ctx.data_sources.get("spark")
    asset = source.add_dataframe_asset(name=kind)
    batch = asset.add_batch_definition_whole_dataframe(f"{kind}_file")
    return ctx.validation_definitions.add(gx.ValidationDefinition(name=f"{kind}_ingest", data=batch, suite=suite))


@functools.cache
def _gx_context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    try:
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    except Exception:  # noqa: BLE001 - progress bars are cosmetic; older/newer GX may lack the setting
        pass
    ctx.data_sources.add_spark(name="spark")
    return ctx


# A clean delivery (the usual night) is validated with Great Expectations' BOOLEAN_ONLY result: each
# expectation's success, from its unexpected count, and nothing more. With BASIC every expectation also asks for a
# sample of its unexpected values (a query planned for each, even with ``partial_unexpected_count`` 0): on
# ``make run``'s 2026-11-20 the nine suites took 4.83 s against 10.01 s for one BASIC run each, the same summaries
# (bench/results/validation_formats.json). Only when the suite fails is it run again with BASIC, for the counts of
# unexpected values the ledger keeps beside each failed expectation: the ledger holds what one BASIC run gave.
FIRST_FORMAT = {"result_format": "BOOLEAN_ONLY"}
# What Great Expectations computes besides each expectation's success when the suite failed: the count of
# unexpected values (kept in the ledger), not the sample of unexpected values nor their value counts (SUMMARY,
# its default, computes both with Spark jobs of their own for every expectation): the rows themselves are in
# the quarantine with reasons.
RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}


def validate(kind: str, df) -> dict[str, Any]:
    """Run the kind's suite with Great Expectations on a Spark DataFrame; a compact, JSON-able summary. The
    suite runs once with GE's BOOLEAN_ONLY result, and again with its BASIC result only when it failed (see
    ``FIRST_FORMAT``): the same summary as one BASIC run."""
    validation = _gx_validation(kind)
    result = validation.run(batch_parameters={"dataframe": df}, result_format=FIRST_FORMAT)
    if not result.success:
        result = validation.run(batch_parameters={"dataframe": df}, result_format=RESULT_FORMAT)
    return summarise(kind, result)


def summarise(kind: str, result) -> dict[str, Any]:
    """A Great Expectations validation result as the ledger keeps it: success, expectations evaluated, and each
    failed expectation with its column, its count of unexpected values (None without BASIC) and its level."""
    failed = []
    for r in result.results:
        if not r.success:
            cfg = r.expectation_config
            failed.append({
                "expectation": cfg.type,
                "column": cfg.kwargs.get("column"),
                "unexpected_count": (r.result or {}).get("unexpected_count"),
                "level": "row" if cfg.type in ROW_LEVEL else "table",
            })
    stats = result.statistics
    return {
        "suite": kind,
        "success": bool(result.success),
        "evaluated": int(stats["evaluated_expectations"]),
        "failed": failed,
    }
