"""The nightly stages, one module or package each, in pipeline order: ingest, conform, tags, segments,
propensity, cpc (the decision), export, evaluate; and the weekly maintenance.

Each reads extract -> pure transform (DataFrame in, DataFrame out) -> load, keyed by its run date. A stage
imports only the platform, ``models`` and the stages before it (import-linter contract in ``setup.cfg``).
"""
