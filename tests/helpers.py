"""Small builders for inline test rows."""

from __future__ import annotations

import datetime as dt

from jobs.stages.tags.catalogue import Catalogue

SNAPSHOT = dt.date(2026, 11, 20)


def base_frame(spark, cat: Catalogue, rows: list[dict]):
    """A frame with every base column a tag may use: values given per row, everything else null (window
    features 0, lists empty), as the engine fills them."""
    cols = {"customer_id": "string", **cat.base_columns()}
    defaults = {name: 0 for name, (kind, _, _) in cat.features.items() if kind != "days_since"}
    from jobs.stages.tags import categories

    defaults.update({f"{c}_held": 0 for c in categories()})
    defaults.update({"open_complaints": 0, "held_vas": 0, "device_changes_365d": 0, "held_products": [], "optouts": [],
                     "snapshot_date": SNAPSHOT, "status": "active"})
    def coerce(value, kind):
        return float(value) if kind == "double" and value is not None else value

    data = [tuple(coerce({**defaults, **r}.get(c), kind) for c, kind in cols.items()) for r in rows]
    schema = ", ".join(f"`{k}` {v}" for k, v in cols.items())
    return spark.createDataFrame(data, schema)
