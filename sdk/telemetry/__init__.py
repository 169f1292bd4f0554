"""Local Telemetry SDK: record agent runs; spool first, deliver in the background.

from telemetry import TelemetryClient
client = TelemetryClient()
with client.track_run("my_agent", "process_files") as ctx:
    ctx.log_event("checkpoint", {"step": 1})
    ctx.set_metrics(items_discovered=10)
"""

__version__ = "1.0.0"

from .client import TelemetryClient  # noqa: E402
from .config import TelemetryConfig  # noqa: E402
from .models import SCHEMA_VERSION, APIPayload, RunEvent, RunRecord  # noqa: E402
from .runs import RunContext  # noqa: E402

__all__ = [
    "TelemetryClient",
    "RunContext",
    "TelemetryConfig",
    "RunRecord",
    "RunEvent",
    "APIPayload",
    "SCHEMA_VERSION",
    "__version__",
]
