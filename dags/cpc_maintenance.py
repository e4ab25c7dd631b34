"""
### CPC table maintenance (weekly)

Checks the incremental tag state against the full recompute on a sample of customers (fails on any
difference, before anything is deleted), deletes tag states older than `tag_state_days` and tag snapshots
older than `tag_history_days`, compacts the large tables and vacuums every table with
`vacuum_retention_hours` (`conf/maintenance.yaml`). Keyed by the logical date like every task. The DAG only
wires; the work is in `jobs/stages/maintenance.py`.
"""

from __future__ import annotations

# light: no Spark, no job code at parse time; the Airflow DAG is built there
from jobs.airflow_glue import defaults as dag_defaults

dag = dag_defaults.weekly_stage_dag("cpc_maintenance", stage="maintain", schedule="0 5 * * 0", doc_md=__doc__, tags=["cpc", "maintenance"])
