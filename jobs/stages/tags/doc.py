"""The human-readable tag catalogue, generated from conf/tags.yaml: ``cpc catalogue-doc`` writes docs/tags.md.

A test fails when the committed document differs from what the catalogue generates, so the docs always
list every tag with its definition.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tabulate import tabulate

from jobs.platform.config import PROJECT_DIR
from jobs.stages.tags.catalogue import Catalogue, definition, load_catalogue

DOC = PROJECT_DIR / "docs" / "tags.md"
HEADERS = ("id", "name", "名称", "kind", "type", "definition", "description", "empty")
FAMILY_ORDER = ["social", "value", "service", "marketing", "contact", "lifecycle", "tier", "model"]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(cat: Catalogue) -> str:
    fam = Counter(t.family for t in cat.tags)
    lines = [
        "# Tag catalogue",
        "",
        "Generated from `conf/tags.yaml` by `cpc catalogue-doc`; do not edit by hand.",
        f"Catalogue version {cat.version}: **{len(cat.tags)} tags**, "
        + ", ".join(f"{f} {fam[f]}" for f in FAMILY_ORDER if fam[f]) + ".",
        "",
        "Grain: one row per customer per snapshot date in `gold.customer_tags` (column = tag id). The same",
        "definitions are in the table `gold.tag_catalogue`; daily value shares and drift are in `gold.tag_stats`",
        "(a numeric tag's mean to 12 significant digits: Spark's sum of doubles varies in its last bits with the",
        "order it adds the partitions in).",
        "",
        "Definitions are Spark SQL over the customer's profile and state as of the snapshot date and window",
        "features summed from `silver.customer_day`: `<measure>_<window>` (sum), `days_with_<measure>_<window>`,",
        "`days_since_<measure>`; windows: " + ", ".join(f"`{k}` = days {a}..{b} before" for k, (a, b) in cat.windows.items()) + ".",
        "Empty rule `carry`: when today's value is empty the customer's value from the previous snapshot is kept.",
        "",
    ]
    for f in FAMILY_ORDER:
        tags = [t for t in cat.tags if t.family == f]
        if not tags:
            continue
        rows = [(f"`{t.id}`", _cell(t.name_en), _cell(t.name_zh), t.kind, t.type, f"`{_cell(definition(t))}`",
                 _cell(t.description), t.empty if t.default is None else f"default {t.default}") for t in tags]
        lines += [f"## {f} ({len(tags)})", "", tabulate(rows, HEADERS, tablefmt="github", disable_numparse=True), ""]
    return "\n".join(lines)


def write(path: Path = DOC) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(load_catalogue()), encoding="utf-8")
    return path
