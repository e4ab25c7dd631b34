"""The data factory: ``platform`` (leaves), ``stages`` (one per nightly stage), ``orchestration``,
``airflow_glue``, ``serving`` and the ``cpc`` command line (``cli``). The map is in README.md."""
