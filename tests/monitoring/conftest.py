"""Monitoring: the exposition checked by promtool, a real Prometheus scraping a real console,
the alerting rules and the Grafana dashboard of docs/monitoring/."""

from __future__ import annotations

import shutil

import pytest

from tests.reliability.support import deselect_soak_unless_asked


def pytest_collection_modifyitems(config, items):
    deselect_soak_unless_asked(config, items)


@pytest.fixture(scope="session")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: apt-get install -y prometheus")
    return found
