"""Fixtures the dashboard tests share with other test folders."""

# the warehouse and registered tiny run of the explanation panel's tests
from tests.explain.conftest import explain_warehouse  # noqa: F401
