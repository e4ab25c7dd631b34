"""Orchestration: the stage registry (written once), the nightly run, backfills, the history load and the
run summary. The DAGs (through ``jobs.airflow_glue``) and the CLI call these."""
