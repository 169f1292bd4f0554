"""Property-based tests; soak tests only with TELEMETRY_SOAK=1."""

from tests.reliability.support import deselect_soak_unless_asked


def pytest_collection_modifyitems(config, items):
    deselect_soak_unless_asked(config, items)
