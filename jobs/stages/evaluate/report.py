"""The campaign report a person opens: one self-contained HTML page (inline SVG, no scripts, no network).

Written by the nightly ``evaluate`` stage to ``reports/campaigns_<date>.html`` (and ``reports/campaigns_latest.html``)
and linked from the run's summary. Charts: the response funnel, lift over the holdout by campaign and by
channel with 95% confidence intervals, and conversion rates by decision date for the treated and the holdout;
the three-way reading (all campaigns, each campaign, each campaign x channel: the contact's effect on the
treated, the selection gap, incremental conversions and value, the programme's lift over the global holdout,
with their intervals); then the campaign x channel table; and, where the simulator's closed loop left its headline in
the storage root (``reports/loop/headline.json``), CPC against a blind blast and oracles per 1,000 contacts. Everything it draws comes from ``gold.campaign_eval`` and
``gold.campaign_outcomes`` aggregates (a few hundred rows at most).

The page is the Jinja2 template ``templates/report.html.j2`` (autoescaped); the charts are drawn by matplotlib
(Agg canvas, saved as SVG and inlined). The same data gives the same bytes: a fixed ``svg.hashsalt``, no date in
the SVG metadata, and every id of a chart prefixed with the chart's name so that the inlined charts do not clash.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import jinja2
import matplotlib
from markupsafe import Markup
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from jobs.platform.config import Paths

WIDTH_IN = 9.0  # inches; the SVG is 648pt wide (864 px), the page at most 1100 px
BLUE, ORANGE, TEAL, GREEN, RED, GREY = "#4e79a7", "#f28e2b", "#76b7b2", "#59a14f", "#e15759", "#888888"
SERIES_COLORS = {"treated": BLUE, "holdout": ORANGE}
RC = {
    "svg.hashsalt": "cpc-campaign-report",  # ids of clip paths and markers: the same for the same data
    "text.parse_math": False,  # a label with two $ is a label, not a formula
    "svg.fonttype": "none",  # text stays text (selectable, searchable, small), drawn in the page's sans-serif
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#999999",
    "xtick.color": "#444444",
    "ytick.color": "#444444",
}
FUNNEL = ("contacts", "delivered", "opened", "clicked", "accepted", "conversions")
TABLE_COLS = ("campaign_id", "channel", "contacts", "placements", "delivered", "opened", "accepted", "conversions",
              "revenue", "cost", "return", "holdout", "rate_treated", "rate_control", "lift", "lift_low", "lift_high")
TRIAL_STEPS = ("manual", "feedback", "low_usage_nudge", "expiry_sms", "expiry_call")
# The three-way reading of a cell (gold.campaign_eval; jobs.stages.evaluate.THREE_WAY and its counts).
EFFECT_KEYS = ("treated", "not_chosen", "holdout", "global_holdout", "treated_share", "lift", "effect_on_treated", "effect_low",
               "effect_high", "selection_gap", "incremental_conversions_itt", "incremental_conversions_itt_low",
               "incremental_conversions_itt_high", "incremental_value", "incremental_value_low", "incremental_value_high",
               "programme_lift", "programme_lift_low", "programme_lift_high", "incremental_closures",
               "incremental_closures_low", "incremental_closures_high")


# --- formatting (also the template's filters) -------------------------------------------------------------


def percent(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def pp(x) -> str:
    """Percentage points, signed."""
    return "-" if x is None else f"{100 * x:+.2f} pp"


def signed(x, digits: int = 2) -> str:
    """Signed, thousands separated (incremental conversions, money)."""
    return "-" if x is None else f"{x:+,.{digits}f}"


def thousands(x) -> str:
    """Thousands separated; floats (money) with two decimals."""
    if x is None:
        return "-"
    return f"{x:,.2f}" if isinstance(x, float) else f"{x:,}"


# --- charts -----------------------------------------------------------------------------------------------


def _figure(height_in: float) -> Figure:
    fig = Figure(figsize=(WIDTH_IN, height_in), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas: no display, no global pyplot state
    return fig


def svg(fig: Figure, key: str) -> Markup:
    """The figure as inline SVG: no XML prologue, no date, every id prefixed with ``key``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue().decode("utf-8")
    text = text[text.index("<svg"):]
    text = re.sub(r'\bid="', f'id="{key}-', text)
    text = text.replace("url(#", f"url(#{key}-").replace('href="#', f'href="#{key}-')
    return Markup(text.strip())


def chart(key: str, build: Callable[..., Figure | None], *args) -> Markup | None:
    """``build(*args)`` drawn with the report's style, as inline SVG; None when it has nothing to draw."""
    with matplotlib.rc_context(RC):
        fig = build(*args)
        return None if fig is None else svg(fig, key)


def funnel_figure(items: list[tuple[str, float]]) -> Figure | None:
    """Horizontal bars, (label, value), first on top; None when every value is 0."""
    if not any(v for _, v in items):
        return None
    fig = _figure(0.28 * len(items) + 0.5)
    ax = fig.add_subplot()
    values = [v for _, v in items]
    ax.barh(range(len(items)), values, height=0.7, color=BLUE)
    ax.set_yticks(range(len(items)), [label for label, _ in items])
    ax.set_ylim(len(items) - 0.5, -0.5)
    ax.set_xlim(0, 1.12 * max(values))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    for k, v in enumerate(values):
        ax.annotate(f"{v:,.0f}", (v, k), xytext=(4, 0), textcoords="offset points", va="center")
    ax.tick_params(axis="y", length=0)
    return fig


def lift_color(low: float, high: float) -> str:
    """Green when the whole interval is above 0, red when below, grey when it includes 0."""
    return GREEN if low > 0 else RED if high < 0 else GREY


def lift_figure(items: list[tuple[str, float | None, float | None, float | None]]) -> Figure | None:
    """Lift with its confidence interval per label (percentage points): a dot and a whisker around a zero line.
    Labels without a lift (no holdout) are left out; None when none is left."""
    items = [i for i in items if i[1] is not None]
    if not items:
        return None
    fig = _figure(0.3 * len(items) + 0.75)
    ax = fig.add_subplot()
    ax.axvline(0, color="#999999", linestyle=(0, (3, 3)), linewidth=1)
    for k, (_, v, low, high) in enumerate(items):
        color = lift_color(low, high)
        ax.errorbar([100 * v], [k], xerr=[[100 * (v - low)], [100 * (high - v)]], fmt="o", color=color,
                    markersize=6, elinewidth=2, capsize=3)
        ax.annotate(f"{100 * v:+.2f} pp", (1, k), xycoords=("axes fraction", "data"), xytext=(8, 0),
                    textcoords="offset points", va="center", color=color)
    ax.set_yticks(range(len(items)), [label for label, *_ in items])
    ax.set_ylim(len(items) - 0.5, -0.5)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+.1f} pp" if v else "0"))
    ax.set_xlabel("treated rate - holdout rate, percentage points (dot: lift; whisker: 95% CI)")
    ax.tick_params(axis="y", length=0)
    ax.spines["left"].set_visible(False)
    return fig


def rate_figure(series: dict[str, list[tuple[dt.date, float]]]) -> Figure | None:
    """Conversion rate by decision date, one line per series; None without any point."""
    if not any(series.values()):
        return None
    fig = _figure(2.7)
    ax = fig.add_subplot()
    for name, points in sorted(series.items(), key=lambda kv: (kv[0] != "treated", kv[0])):
        points = sorted(points)
        ax.plot([d for d, _ in points], [100 * r for _, r in points], marker="o", markersize=3, linewidth=2,
                color=SERIES_COLORS.get(name, TEAL), label=name)
    ax.set_ylim(0, 1.1 * max(100 * r for points in series.values() for _, r in points) or 1)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2f}%"))
    locator = AutoDateLocator(maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.grid(axis="y", color="#eeeeee")
    ax.set_axisbelow(True)
    ax.set_ylabel("converted within the window")
    ax.legend(frameon=False, loc="lower left", bbox_to_anchor=(0, 1), ncols=len(series), borderaxespad=0.2)
    return fig


# --- the page ---------------------------------------------------------------------------------------------


@functools.cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(percent=percent, pp=pp, thousands=thousands, signed=signed)
    return env


def _series(trend: list[dict]) -> dict[str, list[tuple[dt.date, float]]]:
    out: dict[str, list] = {}
    for t in trend:
        if t["n"]:
            out.setdefault("treated" if t["group"] == "treated" else "holdout", []).append((t["snapshot_date"], t["x"] / t["n"]))
    return out


def _total(rows: list[dict]) -> dict:
    """The ``all`` row with what the page says of it (counts as int, money as float, 0 when absent)."""
    total = next((r for r in rows if r["level"] == "all"), {})
    out = {k: total.get(k) for k in ("rate_treated", "rate_control", "lift", "lift_low", "lift_high", *EFFECT_KEYS)}
    out.update({k: int(total.get(k) or 0) for k in (*FUNNEL, "placements", "opted_out", "complained")})
    out.update({k: float(total.get(k) or 0) for k in ("revenue", "cost", "return", "matured_share")})
    return out


def _lifts(rows: list[dict], key: str) -> list[tuple]:
    return [(r[key], r["lift"], r["lift_low"], r["lift_high"]) for r in rows]


def context(day: dt.date, rows: list[dict], trend: list[dict], s: dict, unmatched: int, trials: list[dict]) -> dict:
    """Everything the template shows."""
    total = _total(rows)
    by_campaign = sorted((r for r in rows if r["level"] == "campaign"), key=lambda r: r["campaign_id"])
    by_channel = sorted((r for r in rows if r["level"] == "channel"), key=lambda r: r["channel"])
    cells = sorted((r for r in rows if r["level"] == "campaign,channel"), key=lambda r: (r["campaign_id"], r["channel"]))
    return {
        "day": day, "s": s, "unmatched": unmatched, "total": total,
        "funnel_chart": chart("funnel", funnel_figure, [(k, float(total[k])) for k in FUNNEL]),
        "campaign_chart": chart("lift-campaign", lift_figure, _lifts(by_campaign, "campaign_id")),
        "channel_chart": chart("lift-channel", lift_figure, _lifts(by_channel, "channel")),
        "rate_chart": chart("rates", rate_figure, _series(trend)),
        "cells": cells, "by_channel": by_channel, "cols": TABLE_COLS,
        # the three-way reading: all campaigns, each campaign, each campaign x channel (cells with eligible decisions)
        "effects": [r for r in [*(r for r in rows if r["level"] == "all"), *by_campaign, *cells]
                    if r.get("treated") or r.get("not_chosen")],
        "trials": sorted(trials, key=lambda t: (t["status"], t["next_step"])), "trial_steps": TRIAL_STEPS,
    }


def render(day: dt.date, rows: list[dict], trend: list[dict], s: dict, unmatched: int, trials: list[dict] | None = None,
           bench: dict | None = None) -> str:
    """The page; ``bench``: the closed loop's headline (:func:`benchmark`), shown in a section of its own."""
    return _env().get_template("report.html.j2").render({**context(day, rows, trend, s, unmatched, trials or []), "bench": bench})


BENCH_ROW = ("profile", "maker", "n", "incremental_conversions", "incremental_conversions_low", "incremental_conversions_high",
             "net_incremental_value", "net_incremental_value_low", "net_incremental_value_high")


def _number(v):
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and v == v else None


def benchmark(paths: Paths) -> dict | None:
    """The closed loop's headline for this storage root, when the simulator's benchmark wrote one
    (``reports/loop/headline.json``: ``python -m simulator loop``, or the aggregate of ``python -m simulator loops``
    / ``headline``): only its ``display`` block (a title and, per list maker, incremental conversions and net
    incremental value per 1,000 contacts, with a 95% interval over seeds when aggregated). The file is the
    benchmark's output, read for display only; the pipeline never reads the simulator's truth. None without one (or
    with one the page cannot read)."""
    f = paths.reports / "loop" / "headline.json"
    try:
        block = json.loads(f.read_text(encoding="utf-8")).get("display") if f.exists() else None
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(block, dict) or not isinstance(block.get("rows"), list) or not block["rows"]:
        return None
    rows = [{k: (str(r.get(k) or "") if k in ("profile", "maker") else _number(r.get(k))) for k in BENCH_ROW}
            for r in block["rows"] if isinstance(r, dict)]
    return {"title": str(block.get("title") or ""), "rows": rows, "file": str(f.relative_to(paths.root))}


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file beside it, then a rename)."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write(paths: Paths, day: dt.date, rows: list[dict], trend: list[dict], s: dict, unmatched: int,
          trials: list[dict] | None = None) -> Path:
    paths.reports.mkdir(parents=True, exist_ok=True)
    out = paths.reports / f"campaigns_{day.isoformat()}.html"
    _replace(out, render(day, rows, trend, s, unmatched, trials, benchmark(paths)))
    _replace(paths.reports / "campaigns_latest.html", out.read_text(encoding="utf-8"))
    return out
