"""
### CPC propensity model training (weekly)

Trains every model of `conf/models.yaml` (churn, handset purchase, product take-up) as of the logical date:
features from tag snapshots at dates T, labels from the operator's files in (T, T + horizon], a time-based
validation split, and registers each model with its metadata and quality report under `<root>/models`.
Then one uplift model per product family from `gold.campaign_outcomes` (exploration contacts against the
campaigns' holdouts; a cold start is registered with its reason), under `<root>/models/uplift_<family>`.
The nightly DAG's `propensity` task scores with the newest models trained as of its own date. The DAG only
wires; the work is in `jobs/stages/propensity.py`, `jobs/stages/uplift.py` and `models/`.
"""

from __future__ import annotations

# light: no Spark, no job code at parse time; the Airflow DAG is built there
from jobs.airflow_glue import defaults as dag_defaults

dag = dag_defaults.weekly_stage_dag("cpc_training", stage="train", schedule="0 4 * * 6", doc_md=__doc__, tags=["cpc", "models"])
