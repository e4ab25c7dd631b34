"""The simulated operator: customers with hidden truth and their daily files (``generate``), the campaign
platform answering the exported lists (``responder``), the closed loop (``loop``), its headline (``headline``)
and the headline of several loops over seeds (``aggregate``).

Not part of the production package: ``setup.cfg`` installs ``jobs``, ``models`` and ``schemas`` only, and no
production module imports this one (import-linter contract). ``make run``, ``make loop``, the benchmark and
the tests run it from the source tree: ``python -m simulator --help``.
"""
