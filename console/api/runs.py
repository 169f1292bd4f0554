"""Run routes (compatible with local-telemetry HTTP API 3.0.0, plus ours)."""
