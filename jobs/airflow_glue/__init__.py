"""What the DAG files need from Airflow, kept out of them: DAG defaults, the task call that does not retry
data errors, the failure callback, and a local Airflow backfill. DAG files import ``defaults`` at parse time,
so nothing here imports Spark or a stage at module level."""
