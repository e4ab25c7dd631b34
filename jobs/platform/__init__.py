"""The platform: configuration, the Spark session, Delta's jars, lake I/O, privacy, logging and the error types.

Leaves of the house: nothing here imports a stage, orchestration, Airflow glue, serving or the CLI
(``make lint`` checks it with import-linter, see ``setup.cfg``).
"""
