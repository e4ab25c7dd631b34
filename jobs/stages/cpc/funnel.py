"""The CPC funnel as a person reads it: from the customers each campaign targeted to those contacted, with
the rule that removed each step's candidates (``gold.cpc_funnel``), and each channel's list size.

``cpc funnel --date D`` prints it as markdown (docs/cpc.md shows the sample run's); the nightly summary
prints the short form. Everything read here is small: one row per campaign x channel x step.
"""

from __future__ import annotations

import datetime as dt

from tabulate import tabulate

from jobs.platform import arrow_lake, lake
from jobs.platform.config import Paths, business
from jobs.stages.cpc import HELD_OUT, STEPS

TERMINAL = (*HELD_OUT, "placement", "contact")  # global_holdout, holdout: recorded, never contacted


def tables(spark, paths: Paths, day: dt.date) -> dict:
    """{'customers': {campaign: {step: n}}, 'candidates': {step: n}, 'channels': {channel: {step: n}}}."""
    return tables_of(lake.read(spark, paths, "gold.cpc_funnel").where(f"snapshot_date = '{day.isoformat()}'")
                     .select(*COLUMNS).collect())  # steps x campaigns x channels


COLUMNS = ("grain", "campaign_id", "channel", "step", "count")


def read(paths: Paths, day: dt.date) -> dict:
    """:func:`tables` read without Spark (``arrow_lake``): for ``cpc funnel`` and the run's summary, which a person
    waits for."""
    return tables_of(arrow_lake.read(paths, "gold.cpc_funnel", list(COLUMNS), day))


def tables_of(rows) -> dict:
    """:func:`tables` from the date's rows of gold.cpc_funnel (Spark rows or dicts with :data:`COLUMNS`)."""
    customers: dict[str, dict[str, int]] = {}
    candidates = dict.fromkeys(STEPS, 0)
    channels: dict[str, dict[str, int]] = {}
    for r in rows:
        if r["grain"] == "customer":
            customers.setdefault(r["campaign_id"], {})[r["step"]] = int(r["count"])
        else:
            candidates[r["step"]] += int(r["count"])
            ch = channels.setdefault(r["channel"], dict.fromkeys(STEPS, 0))
            ch[r["step"]] += int(r["count"])
    return {"customers": customers, "candidates": candidates, "channels": channels}


def _md(headers, rows, numeric_from: int = 1) -> str:
    align = ["left"] * numeric_from + ["right"] * (len(headers) - numeric_from)
    return tabulate(rows, headers, tablefmt="pipe", colalign=align, disable_numparse=True)


def markdown(t: dict, day: dt.date) -> str:
    """The funnel of :func:`tables` (or :func:`read`) as markdown."""
    left = total = sum(t["candidates"].values())
    steps_rows = [("candidates proposed", "", f"{total:,}")]
    for s in STEPS:
        if s in ("placement", "contact"):
            continue
        left -= t["candidates"].get(s, 0)
        steps_rows.append((s, f"{t['candidates'].get(s, 0):,}", f"{left:,}"))
    steps_rows += [("**placed (passive)**", "", f"{t['candidates'].get('placement', 0):,}"),
                   ("**contacted (active)**", "", f"{t['candidates'].get('contact', 0):,}")]
    rules = [s for s in STEPS if s not in TERMINAL]
    camp_rows = [(camp, f"{sum(steps.values()):,}", *[f"{steps[s]:,}" if steps.get(s) else "" for s in rules],
                  *[f"{steps.get(s, 0):,}" for s in TERMINAL]) for camp, steps in sorted(t["customers"].items())]
    row_rules = STEPS[: STEPS.index(HELD_OUT[0])]  # the eligibility rules (1-11)
    passive = {c["id"] for c in business("channels")["channels"] if c["kind"] == "passive"}
    chan_rows = [(ch, *[f"{v:,}" for v in (sum(steps.values()), sum(steps[s] for s in row_rules), steps["global_holdout"],
                                           steps["holdout"], steps["harmed"], steps["no_value"], steps["passive_first"],
                                           steps["one_offer_a_day"], steps["capacity"], steps["contact"])])
                 for ch, steps in sorted(t["channels"].items()) if ch not in passive]
    return "\n".join([
        f"### CPC funnel {day}", "", "Candidates (customer x campaign x product x channel), removed by each rule in order:", "",
        _md(("step", "removed here", "remaining after"), steps_rows), "",
        "Customers per campaign (a customer leaves a campaign at the step that removed its last candidate):", "",
        _md(("campaign", "targeted", *rules, "global holdout", "holdout", "placed", "contacted"), camp_rows), "",
        "Active channels: candidates that reached the channel and what became of them:", "",
        _md(("channel", "candidates", "removed by the policy", "global holdout", "holdout", "harmed", "no value",
             "passive first", "one a day", "capacity", "contacted"), chan_rows),
    ]) + "\n"


def short(t: dict) -> list[str]:
    """One line per campaign of :func:`tables`: targeted -> global holdout, holdout, placed, contacted."""
    lines = []
    for camp, steps in sorted(t["customers"].items()):
        lines.append(f"  {camp:<20} targeted {sum(steps.values()):>7,}  global holdout {steps.get('global_holdout', 0):>6,}  "
                     f"holdout {steps.get('holdout', 0):>6,}  placed {steps.get('placement', 0):>6,}  "
                     f"contacted {steps.get('contact', 0):>6,}")
    return lines
