"""Fixtures shared by integration modules (a module's own fixture of the same name wins)."""

from tests.integration.results_support import sims  # noqa: F401
