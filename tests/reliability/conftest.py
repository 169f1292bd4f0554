"""Fault injection with real processes: consoles, agents, senders, databases.

Soak tests (`@pytest.mark.soak`) run only with TELEMETRY_SOAK=1 (`make soak`); they
are deselected otherwise. Every soak test has a normal-size twin that always runs.
Figures measured by the tests go to build/reliability/<name>.json (docs/reliability.md
quotes them).
"""

from __future__ import annotations

import pytest

from tests.helpers import ConsoleProcess
from tests.reliability.support import deselect_soak_unless_asked


def pytest_collection_modifyitems(config, items):
    deselect_soak_unless_asked(config, items)


@pytest.fixture
def consoles():
    """Consoles a test appends here are stopped (or killed) at teardown."""
    made: list[ConsoleProcess] = []
    yield made
    for console in made:
        try:
            console.stop()
        except Exception:
            console.kill()
