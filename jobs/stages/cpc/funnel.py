"""The CPC funnel as a person reads it: from the customers each campaign targeted to those contacted, with
the rule that removed each step's candidates (``gold.cpc_funnel``), and each channel's list size.

``cpc funnel --date D`` prints it as markdown (docs/cpc.md shows the sample run's); the nightly summary
prints the short form. Everything read here is small: one row per campaign x channel x step.
"""

from __future__ import annotations

import datetime as dt

from jobs.platform import lake
from jobs.platform.config import Paths, business

TERMINAL = ("holdout", "placement", "contact")


def tables(spark, paths: Paths, day: dt.date) -> dict:
    """{'customers': {campaign: {step: n}}, 'candidates': {step: n}, 'channels': {channel: {step: n}}}."""
    from jobs.stages.cpc import STEPS

    rows = lake.read(spark, paths, "gold.cpc_funnel").where(f"snapshot_date = '{day.isoformat()}'").collect()  # steps x campaigns x channels
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


def markdown(spark, paths: Paths, day: dt.date) -> str:
    from jobs.stages.cpc import STEPS

    t = tables(spark, paths, day)
    out = [f"### CPC funnel {day}", ""]
    total = sum(t["candidates"].values())
    out += ["Candidates (customer x campaign x product x channel), removed by each rule in order:", "",
            "| step | removed here | remaining after |", "|---|---:|---:|"]
    left = total
    out.append(f"| candidates proposed | | {total:,} |")
    for s in STEPS:
        n = t["candidates"].get(s, 0)
        if s in ("placement", "contact"):
            continue
        left -= n
        out.append(f"| {s} | {n:,} | {left:,} |")
    out.append(f"| **placed (passive)** | | {t['candidates'].get('placement', 0):,} |")
    out.append(f"| **contacted (active)** | | {t['candidates'].get('contact', 0):,} |")
    out += ["", "Customers per campaign (a customer leaves a campaign at the step that removed its last candidate):", ""]
    rules = [s for s in STEPS if s not in TERMINAL]
    out.append("| campaign | targeted | " + " | ".join(rules) + " | holdout | placed | contacted |")
    out.append("|---|---:|" + "---:|" * (len(rules) + 3))
    for camp, steps in sorted(t["customers"].items()):
        targeted = sum(steps.values())
        cells = [f"{steps.get(s, 0):,}" if steps.get(s) else "" for s in rules]
        out.append(f"| {camp} | {targeted:,} | " + " | ".join(cells) +
                   f" | {steps.get('holdout', 0):,} | {steps.get('placement', 0):,} | {steps.get('contact', 0):,} |")
    out += ["", "Active channels: candidates that reached the channel and what became of them:", "",
            "| channel | candidates | removed by the policy | holdout | passive first | one a day | capacity | contacted |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    row_rules = STEPS[: STEPS.index("holdout")]
    passive = {c["id"] for c in business("channels")["channels"] if c["kind"] == "passive"}
    for ch, steps in sorted(t["channels"].items()):
        if ch in passive:
            continue
        out.append(f"| {ch} | {sum(steps.values()):,} | {sum(steps[s] for s in row_rules):,} | {steps['holdout']:,} | "
                   f"{steps['passive_first']:,} | {steps['one_offer_a_day']:,} | {steps['capacity']:,} | {steps['contact']:,} |")
    return "\n".join(out) + "\n"


def short(spark, paths: Paths, day: dt.date) -> list[str]:
    """One line per campaign: targeted -> holdout, placed, contacted."""
    t = tables(spark, paths, day)
    lines = []
    for camp, steps in sorted(t["customers"].items()):
        lines.append(f"  {camp:<20} targeted {sum(steps.values()):>7,}  holdout {steps.get('holdout', 0):>6,}  "
                     f"placed {steps.get('placement', 0):>6,}  contacted {steps.get('contact', 0):>6,}")
    return lines
