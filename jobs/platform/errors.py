"""One error hierarchy for the whole factory.

``CpcError`` is the root. Two families decide what Airflow does with a failed task (``jobs.airflow_glue``):
- ``ConfigError``: configuration the pipeline cannot use (a conf file, the tag catalogue, a suite, a model's
  settings). It fails the same way on every retry, so it is not retried;
- ``DataError``: a delivery or a table the pipeline refuses (a rejected file, a list breaking the contact
  policy, a model that does not fit the tag table). Not retried either.
Anything else (a lost executor, a full disk) is left to the task's retries.
"""

from __future__ import annotations


class CpcError(Exception):
    """Root of the factory's own errors."""


class ConfigError(CpcError, ValueError):
    """A configuration file is missing or says something the pipeline cannot use; the message names the file,
    the entry and the field."""


class CatalogueError(ConfigError):
    """The tag catalogue (or a business rule over tags) cannot be used; the message names the tag or rule."""


class UnsafeExpression(CatalogueError):
    """An expression uses syntax the tag language does not allow."""


class SuiteError(ConfigError):
    """A Great Expectations suite in ``expectations/`` is missing or malformed."""


class TrainingError(ConfigError):
    """Training cannot start: missing history or label windows reaching past the data."""


class DataError(CpcError):
    """Data the pipeline refuses: it fails the same way on every retry."""


class IngestError(DataError, RuntimeError):
    """One or more delivered files were rejected; the message names each file and its problem."""


class ExportError(DataError, RuntimeError):
    """A list cannot be published (it would break the contact policy or disagree with the decisions)."""


class ModelMismatch(DataError, ValueError):
    """A registered model does not fit the tag table it is asked to score."""


class TagStateMismatch(DataError, RuntimeError):
    """The incremental tag state differs from the full recompute (the weekly check); the message names the first
    differing feature or state column, customer and day."""


class JarsMissing(CpcError, RuntimeError):
    """Delta's jars are not in the project's cache: run ``make setup``."""


NOT_RETRIED = (ConfigError, DataError)
