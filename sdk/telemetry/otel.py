"""The current OpenTelemetry span's ids, for a run's context; OpenTelemetry stays optional.

A span can be current only once the agent has imported `opentelemetry.trace`, so
the SDK looks for that module in `sys.modules` and never imports it itself: no
dependency, and no import cost for agents that do not trace.
"""

import logging
import sys
from typing import Any, Dict

logger = logging.getLogger("telemetry")

TRACE_ID_KEY = "otel_trace_id"  # 32 lowercase hex digits
SPAN_ID_KEY = "otel_span_id"  # 16 lowercase hex digits


def current_span_ids() -> Dict[str, str]:
    """Return the current span's trace and span ids as hex, or {} (no OpenTelemetry, no valid span)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return {}
    try:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return {}
        return {TRACE_ID_KEY: format(context.trace_id, "032x"), SPAN_ID_KEY: format(context.span_id, "016x")}
    except Exception:  # a broken or unexpected opentelemetry must not reach the agent
        logger.debug("telemetry: cannot read the current OpenTelemetry span", exc_info=True)
        return {}


def with_span_ids(context: Any, ids: Dict[str, str]) -> Any:
    """Return a run's context_json with the span ids added; the caller's own keys win.

    A context that is not a JSON object (text, a list) is returned as it is: the
    ids have nowhere to go without changing what the caller sent.
    """
    if context is None:
        return dict(ids)
    if isinstance(context, dict):
        return {**ids, **context}
    return context
