"""The campaign report a person opens: one self-contained HTML page (inline SVG, no scripts, no network).

Written by the nightly ``evaluate`` stage to ``reports/campaigns_<date>.html`` (and ``reports/campaigns_latest.html``)
and linked from the run's summary. Charts: the response funnel, lift over the holdout by campaign and by
channel with 95% confidence intervals, and conversion rates by decision date for the treated and the holdout;
then the campaign x channel table. Everything it draws comes from ``gold.campaign_eval`` and
``gold.campaign_outcomes`` aggregates (a few hundred rows at most).
"""

from __future__ import annotations

import datetime as dt
import html
import os
from pathlib import Path

from jobs.platform.config import Paths

W = 720
CSS = """body{font-family:system-ui,Segoe UI,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}
.note{color:#555;font-size:13px}svg text{font-size:11px;font-family:inherit}"""


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _pp(x) -> str:
    return "-" if x is None else f"{100 * x:+.2f} pp"


def bars(items: list[tuple[str, float]], fmt=lambda v: f"{v:,.0f}", color="#4e79a7") -> str:
    """Horizontal bars: (label, value)."""
    if not items:
        return "<p class='note'>nothing to show yet</p>"
    top = max(v for _, v in items) or 1.0
    h = 22 * len(items) + 10
    out = [f"<svg width='{W}' height='{h}' role='img'>"]
    for k, (label, v) in enumerate(items):
        y = 5 + 22 * k
        w = (W - 260) * v / top
        out.append(f"<text x='150' y='{y + 14}' text-anchor='end'>{html.escape(label)}</text>"
                   f"<rect x='160' y='{y}' width='{w:.1f}' height='16' fill='{color}'/>"
                   f"<text x='{165 + w:.1f}' y='{y + 13}'>{html.escape(fmt(v))}</text>")
    out.append("</svg>")
    return "".join(out)


def intervals(items: list[tuple[str, float | None, float | None, float | None]]) -> str:
    """Lift with its confidence interval per label: a dot and a whisker around a zero line (percentage points)."""
    items = [i for i in items if i[1] is not None]
    if not items:
        return "<p class='note'>no holdout to compare with yet: lift needs decisions of earlier days</p>"
    lo = min(min(i[2] for i in items), 0.0)
    hi = max(max(i[3] for i in items), 0.0)
    span = (hi - lo) or 1e-6
    x0, x1 = 200, W - 120

    def x(v):
        return x0 + (x1 - x0) * (v - lo) / span

    h = 24 * len(items) + 30
    out = [f"<svg width='{W}' height='{h}' role='img'>",
           f"<line x1='{x(0):.1f}' y1='0' x2='{x(0):.1f}' y2='{h - 18}' stroke='#999' stroke-dasharray='3,3'/>",
           f"<text x='{x(0):.1f}' y='{h - 4}' text-anchor='middle'>0</text>",
           f"<text x='{x1:.1f}' y='{h - 4}' text-anchor='end'>{100 * hi:+.2f} pp</text>",
           f"<text x='{x0:.1f}' y='{h - 4}'>{100 * lo:+.2f} pp</text>"]
    for k, (label, v, a, b) in enumerate(items):
        y = 12 + 24 * k
        color = "#59a14f" if a > 0 else ("#e15759" if b < 0 else "#888")
        out.append(f"<text x='{x0 - 10}' y='{y + 4}' text-anchor='end'>{html.escape(label)}</text>"
                   f"<line x1='{x(a):.1f}' y1='{y}' x2='{x(b):.1f}' y2='{y}' stroke='{color}' stroke-width='2'/>"
                   f"<circle cx='{x(v):.1f}' cy='{y}' r='4' fill='{color}'/>"
                   f"<text x='{x1 + 8}' y='{y + 4}'>{100 * v:+.2f} pp</text>")
    out.append("</svg>")
    return "".join(out)


def lines(series: dict[str, list[tuple[dt.date, float]]]) -> str:
    """Conversion rate by decision date, one line per series."""
    pts = [p for s in series.values() for p in s]
    if not pts:
        return "<p class='note'>no decisions yet</p>"
    days = sorted({d for d, _ in pts})
    top = max(v for _, v in pts) or 1e-6
    x0, x1, y0, y1 = 60, W - 20, 200, 20

    def xy(d, v):
        x = x0 + (x1 - x0) * (days.index(d) / max(len(days) - 1, 1))
        return x, y0 - (y0 - y1) * v / top

    colors = {"treated": "#4e79a7", "holdout": "#f28e2b"}
    out = [f"<svg width='{W}' height='240' role='img'><line x1='{x0}' y1='{y0}' x2='{x1}' y2='{y0}' stroke='#999'/>",
           f"<text x='{x0 - 5}' y='{y1 + 4}' text-anchor='end'>{100 * top:.2f}%</text><text x='{x0 - 5}' y='{y0}' text-anchor='end'>0</text>",
           f"<text x='{x0}' y='{y0 + 16}'>{days[0]}</text><text x='{x1}' y='{y0 + 16}' text-anchor='end'>{days[-1]}</text>"]
    for k, (name, s) in enumerate(sorted(series.items())):
        c = colors.get(name, "#76b7b2")
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(d, v) for d, v in sorted(s)))
        out.append(f"<polyline points='{path}' fill='none' stroke='{c}' stroke-width='2'/>"
                   f"<text x='{x1 - 120}' y='{y1 + 14 * k}' fill='{c}'>{html.escape(name)}</text>")
    out.append("</svg>")
    return "".join(out)


def _table(rows: list[dict]) -> str:
    cols = ("campaign_id", "channel", "contacts", "placements", "delivered", "opened", "accepted", "conversions", "revenue",
            "cost", "return", "holdout", "rate_treated", "rate_control", "lift", "lift_low", "lift_high")
    head = "".join(f"<th class='l'>{c}</th>" if c in ("campaign_id", "channel") else f"<th>{c}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            if c in ("campaign_id", "channel"):
                cells.append(f"<td class='l'>{html.escape(str(v))}</td>")
            elif c.startswith("rate"):
                cells.append(f"<td>{_pct(v)}</td>")
            elif c.startswith("lift"):
                cells.append(f"<td>{_pp(v)}</td>")
            elif isinstance(v, float):
                cells.append(f"<td>{v:,.2f}</td>")
            else:
                cells.append(f"<td>{'-' if v is None else f'{v:,}'}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def trial_table(trials: list[dict]) -> str:
    """Trials of the last 60 days by how they ended, with the funnel steps they got and the next step."""
    if not trials:
        return "<p class='note'>no trial started in the last 60 days</p>"
    steps = ("manual", "feedback", "low_usage_nudge", "expiry_sms", "expiry_call")
    head = "<tr><th class='l'>status</th><th class='l'>next step</th><th>trials</th>" + "".join(f"<th>{x}</th>" for x in steps) + "</tr>"
    body = "".join(
        f"<tr><td class='l'>{html.escape(t['status'])}</td><td class='l'>{html.escape(t['next_step'])}</td><td>{t['trials']:,}</td>"
        + "".join(f"<td>{int(t[x] or 0):,}</td>" for x in steps) + "</tr>"
        for t in sorted(trials, key=lambda t: (t["status"], t["next_step"])))
    return f"<table>{head}{body}</table>"


def render(day: dt.date, rows: list[dict], trend: list[dict], s: dict, unmatched: int, trials: list[dict] | None = None) -> str:
    total = next((r for r in rows if r["level"] == "all"), {})
    funnel = [(k, float(total.get(k) or 0)) for k in ("contacts", "delivered", "opened", "clicked", "accepted", "conversions")]
    by_campaign = sorted((r for r in rows if r["level"] == "campaign"), key=lambda r: r["campaign_id"])
    by_channel = sorted((r for r in rows if r["level"] == "channel"), key=lambda r: r["channel"])
    cells = sorted((r for r in rows if r["level"] == "campaign,channel"), key=lambda r: (r["campaign_id"], r["channel"]))
    series: dict[str, list] = {}
    for t in trend:
        if t["n"]:
            series.setdefault("treated" if t["group"] == "treated" else "holdout", []).append((t["snapshot_date"], t["x"] / t["n"]))
    headline = ("no holdout to compare with yet" if total.get("lift") is None else
                f"treated {_pct(total['rate_treated'])} vs holdout {_pct(total['rate_control'])}: lift {_pp(total['lift'])} "
                f"(95% CI {_pp(total['lift_low'])} to {_pp(total['lift_high'])}); "
                f"{100 * (total.get('matured_share') or 0):.0f}% of the decisions have had the whole window"
                + ("" if (total.get("matured_share") or 0) >= 1 else ", so this is an interim reading"))
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Campaigns {day}</title><style>{CSS}</style></head><body>
<h1>Campaign evaluation as of {day}</h1>
<p>Decisions of the last {s['lookback_days']} days; a conversion is an order of the offered product within {s['window_days']} days
of the decision, whoever sold it. Lift compares treated decisions (contacts and placements) with the campaign's
holdout of the same decision dates (intent-to-treat). {html.escape(headline)}.</p>
<p class="note">Contacts {int(total.get('contacts') or 0):,}, placements {int(total.get('placements') or 0):,}; revenue {float(total.get('revenue') or 0):,.2f},
cost {float(total.get('cost') or 0):,.2f}, return {float(total.get('return') or 0):,.2f}; {int(total.get('opted_out') or 0):,} opted out,
{int(total.get('complained') or 0):,} complained; {unmatched:,} of today's responses name no known decision.
The holdout is drawn among the candidates the row rules let through; the contacted are the best of them, so the lift
is that of this targeting, not of contacting a random eligible customer (docs/evaluation.md).</p>
<h2>Response funnel (contacts of the period)</h2>{bars(funnel)}
<h2>Lift over the holdout by campaign (95% CI)</h2>{intervals([(r['campaign_id'], r['lift'], r['lift_low'], r['lift_high']) for r in by_campaign])}
<h2>Lift over the holdout by channel (holdout members by the channel of their first-choice offer)</h2>
{intervals([(r['channel'], r['lift'], r['lift_low'], r['lift_high']) for r in by_channel])}
<h2>Conversion rate by decision date</h2>{lines(series)}
<p class="note">The latest dates have not matured: their rates still grow.</p>
<h2>Trial funnel (trials started in the last 60 days; gold.trial_funnel)</h2>
<p class="note">Trial start, usage manual, day-15 feedback, low-usage nudge, expiry reminders by SMS and call, and how each
trial ended. Price-sensitive non-converters are offered the cheaper bundle by the trial_winback campaign.</p>
{trial_table(trials or [])}
<h2>Campaign x channel</h2>{_table(cells)}
<h2>All campaigns by channel</h2>{_table(by_channel)}
</body></html>
"""


def write(paths: Paths, day: dt.date, rows: list[dict], trend: list[dict], s: dict, unmatched: int,
          trials: list[dict] | None = None) -> Path:
    paths.reports.mkdir(parents=True, exist_ok=True)
    out = paths.reports / f"campaigns_{day.isoformat()}.html"
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(render(day, rows, trend, s, unmatched, trials), encoding="utf-8")
    os.replace(tmp, out)
    latest = paths.reports / "campaigns_latest.html"
    tmp = latest.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(out.read_text(encoding="utf-8"), encoding="utf-8")
    os.replace(tmp, latest)
    return out
