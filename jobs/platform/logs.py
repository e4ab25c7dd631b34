"""Logging for the whole factory, and a progress display for long work at a terminal.

Every module logs to ``logging.getLogger(__name__)``. Under Airflow the task's log captures those records;
the ``cpc`` command line calls :func:`setup` (plain ``message`` lines on standard output, ``--debug`` for
DEBUG records and tracebacks). :func:`progress` shows a progress bar (rich) on an interactive terminal and
nothing extra elsewhere, so logs written to a file stay plain.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
PACKAGES = ("jobs", "models", "simulator", "bench")


def setup(debug: bool = False, stream=None) -> None:
    """Log records of the factory's packages as plain lines (``debug``: DEBUG and above, with the logger)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s" if debug else "%(message)s"))
    for name in PACKAGES:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.DEBUG if debug else logging.INFO)
        logger.propagate = False


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate ``items`` with a progress bar on an interactive terminal; plainly otherwise."""
    if not sys.stderr.isatty():
        yield from items
        return
    from rich.progress import track

    yield from track(items, description=description, total=total, transient=True)
