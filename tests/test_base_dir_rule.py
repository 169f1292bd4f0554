"""The SDK and the console find the base directory by one rule.

Each keeps its own copy (the SDK imports nothing of the console), so both run
against the same table here: a divergence fails.
"""

from pathlib import Path

import pytest
from telemetry.config import default_base_dir as sdk_base_dir

from console.core.settings import default_base_dir as console_base_dir

HOME = "/home/agent"
CASES = [
    # (environment, platform, expected)
    ({"TELEMETRY_BASE_DIR": "/srv/telemetry"}, "linux", "/srv/telemetry"),
    ({"TELEMETRY_BASE_DIR": "~/t"}, "linux", f"{HOME}/t"),
    ({"AGENT_METRICS_DIR": "/legacy"}, "linux", "/legacy"),
    ({"TELEMETRY_BASE_DIR": "/new", "AGENT_METRICS_DIR": "/legacy"}, "linux", "/new"),
    ({"TELEMETRY_BASE_DIR": ""}, "linux", f"{HOME}/.local/share/local-telemetry"),
    ({}, "linux", f"{HOME}/.local/share/local-telemetry"),
    ({"XDG_DATA_HOME": "/xdg"}, "linux", "/xdg/local-telemetry"),
    ({}, "darwin", f"{HOME}/Library/Application Support/local-telemetry"),
    ({"XDG_DATA_HOME": "/xdg"}, "darwin", f"{HOME}/Library/Application Support/local-telemetry"),
    ({"LOCALAPPDATA": "C:/Users/a/AppData/Local"}, "win32", "C:/Users/a/AppData/Local/local-telemetry"),
    ({}, "win32", f"{HOME}/AppData/Local/local-telemetry"),
    ({"TELEMETRY_BASE_DIR": "/b"}, "win32", "/b"),
]


@pytest.mark.parametrize("resolve", [sdk_base_dir, console_base_dir], ids=["sdk", "console"])
@pytest.mark.parametrize("environ,platform,expected", CASES)
def test_base_dir_rule(resolve, environ, platform, expected, monkeypatch):
    # `~` expands from HOME, as on the agent's machine.
    monkeypatch.setenv("HOME", HOME)
    assert resolve({"HOME": HOME, **environ}, platform) == Path(expected)
