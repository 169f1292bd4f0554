"""`telemetry` command: status, sync, replay-dead-letters, tail, import."""

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

from . import __version__
from .attempts import held_lines
from .config import TelemetryConfig
from .deadletters import count_dead_letters, last_dead_letter, replay_dead_letters
from .delivery import is_health_answer, json_object
from .sender import Sender
from .spool import SpoolWriter, load_cursor, spool_counts, spool_files, utc_day

EXIT_OK, EXIT_PENDING, EXIT_USAGE = 0, 1, 2
EXIT_UNREACHABLE = 1  # `status`: the console did not answer at the URL


class ConfigError(Exception):
    """A setting the command cannot work with."""


def _config() -> TelemetryConfig:
    url = os.environ.get("TELEMETRY_API_URL") or os.environ.get("METRICS_API_URL")
    if url and not url.strip().startswith(("http://", "https://")):
        raise ConfigError(f"TELEMETRY_API_URL must be an http(s) URL, not {url!r}")
    config = TelemetryConfig.from_env()
    base = config.base_dir
    if base.exists() and not base.is_dir():
        raise ConfigError(f"base dir {base} is not a directory")
    return config


def _sender(config: TelemetryConfig) -> Sender:
    return Sender(
        config.ndjson_dir,
        config.api_url,
        config.api_token,
        batch_size=config.batch_size,
        http_timeout=config.http_timeout,
        max_backoff=config.max_backoff,
        flush_timeout=0,
        retention_days=config.retention_days,
        max_line_attempts=config.max_line_attempts,
    )


def console_health(api_url: str, timeout: float) -> Tuple[bool, str]:
    """Ask GET /health; (True, text) only when the console's own health answer comes back."""
    import requests

    try:
        resp = requests.get(api_url + "/health", timeout=timeout)
    except requests.RequestException as exc:
        return False, f"no ({type(exc).__name__})"
    if resp.status_code == 200 and is_health_answer(json_object(resp)):
        return True, f"yes (HTTP 200, console {resp.json()['version']})"
    # Anything else at that URL (a proxy's page, another service, a 404) is not the console.
    return False, f"no (HTTP {resp.status_code}, not the console's /health answer; is the URL right?)"


def cmd_status(config: TelemetryConfig, args) -> int:
    """Print counts, reachability and the last error; 0 when the console answers, else 1."""
    counts = spool_counts(config.ndjson_dir)
    state = load_cursor(config.ndjson_dir)
    reached, reachable = console_health(config.api_url, args.timeout)
    report = {
        "base_dir": str(config.base_dir),
        "spool_dir": str(config.ndjson_dir),
        "api_url": config.api_url,
        "console_reachable": reachable,
        **counts,
        "rejected": count_dead_letters(config.ndjson_dir),
        "last_dead_letter": last_dead_letter(config.ndjson_dir),
        "held_lines": held_lines(state),
        "last_success_at": state.get("last_success_at"),
        "last_error": state.get("last_error"),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            shown = (
                "-" if value in (None, []) else value if isinstance(value, (str, int)) else json.dumps(value)
            )
            print(f"{key:18} {shown}")
    return EXIT_OK if reached else EXIT_UNREACHABLE


def cmd_sync(config: TelemetryConfig, args) -> int:
    """Deliver what is pending now; 0 when nothing is left, 1 when lines remain."""
    sender = _sender(config)
    before_rejected = sender.rejected
    left = sender.deliver_until(time.monotonic() + args.timeout, stop_on_failure=False)
    sender.release_lock()
    rejected = sender.rejected - before_rejected
    if rejected:
        print(
            f"telemetry: {rejected} record(s) rejected by the console; see "
            f"{config.ndjson_dir}/rejected_*.ndjson",
            file=sys.stderr,
        )
    if left:
        print(f"telemetry: {left} record(s) still pending; last error: {sender.last_error}", file=sys.stderr)
        return EXIT_PENDING
    print(
        f"telemetry: delivered {sender.delivered} record(s) "
        f"({sender.duplicates} already known); nothing pending"
    )
    return EXIT_OK


def cmd_replay(config: TelemetryConfig, args) -> int:
    """Put the dead-lettered lines back in the spool and sync; 0 when all were delivered."""
    writer = SpoolWriter(config.ndjson_dir, fsync=True)
    try:
        replayed, kept = replay_dead_letters(
            config.ndjson_dir, writer, time.strftime("%Y%m%d", time.gmtime())
        )
    except OSError as exc:
        print(f"telemetry: cannot replay the dead letters: {exc}", file=sys.stderr)
        return EXIT_PENDING
    finally:
        writer.close()
    print(
        f"telemetry: {replayed} dead-lettered line(s) back in the spool; "
        f"{kept} torn line(s) stay in the dead letters"
    )
    code = cmd_sync(config, args)
    return EXIT_PENDING if code == EXIT_OK and count_dead_letters(config.ndjson_dir) > kept else code


def format_line(raw: bytes) -> str:
    """Return one spool line in a human-readable form."""
    try:
        line = json.loads(raw)
        data = line.get("data") or {}
    except (ValueError, AttributeError):
        return f"?? {raw[:200]!r}"
    kind = line.get("kind", "?")
    if kind == "event":
        payload = json.dumps(data.get("payload"), default=str)
        detail = f"{data.get('event_type')} {payload[:120]}"
    elif kind == "run_ended":
        detail = f"{data.get('status')} in {data.get('duration_ms')} ms"
        if data.get("error_summary"):
            detail += f" — {str(data['error_summary'])[:120]}"
    elif kind == "commit":
        detail = f"{data.get('commit_hash')} ({data.get('commit_source')})"
    else:
        detail = ", ".join(f"{k}={v}" for k, v in list(data.items())[:6])
    ts = str(line.get("ts", ""))[:23].replace("T", " ")
    who = f"{line.get('agent_name')}/{line.get('job_type')}"
    return f"{ts}  {kind:<11} {who:<30} {line.get('run_id')}  {detail}"


def cmd_tail(config: TelemetryConfig, args) -> int:
    """Print the last lines of the spool, then follow it."""
    raw_dir = config.ndjson_dir
    names = spool_files(raw_dir)
    offsets = {}
    if names:
        path = raw_dir / names[-1]
        data = path.read_bytes()
        for line in data.splitlines()[-args.lines :] if args.lines else []:
            print(format_line(line))
        offsets[names[-1]] = len(data)
        for name in names[:-1]:
            offsets[name] = (raw_dir / name).stat().st_size
    sys.stdout.flush()
    while args.follow:
        for name in spool_files(raw_dir):
            path = raw_dir / name
            with open(path, "rb") as fh:
                fh.seek(offsets.get(name, 0))
                chunk = fh.read()
            end = chunk.rfind(b"\n") + 1
            for line in chunk[:end].splitlines():
                print(format_line(line))
            offsets[name] = offsets.get(name, 0) + end
        sys.stdout.flush()
        time.sleep(args.interval)
    return EXIT_OK


IMPORT_PROGRESS_EVERY = 10_000  # records between progress lines of `telemetry import`


def cmd_import(config: TelemetryConfig, args) -> int:
    """Append an older tool's NDJSON records to the spool, then sync them."""
    from .importer import convert

    writer = SpoolWriter(config.ndjson_dir)
    queued = skipped = 0
    # Progress on a terminal only: scripts and pipes see the summary line alone.
    show_progress = sys.stderr.isatty()
    for name in args.files:
        try:
            raw_lines = Path(name).read_bytes().splitlines()
        except OSError as exc:
            print(f"telemetry: cannot read {name}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        for line, problem in convert(raw_lines):
            if problem:
                skipped += 1
                print(f"telemetry: {name}: skipped: {problem}", file=sys.stderr)
                continue
            ts = json.loads(line).get("ts") or ""
            day = utc_day(ts) if len(ts) >= 10 else time.strftime("%Y%m%d", time.gmtime())
            if writer.append(line, day):
                queued += 1
                if show_progress and queued % IMPORT_PROGRESS_EVERY == 0:
                    print(f"... {name}: {queued} record(s) queued", file=sys.stderr, flush=True)
            else:
                print(f"telemetry: cannot spool: {writer.last_error}", file=sys.stderr)
                return EXIT_USAGE
    writer.close()
    print(f"telemetry: queued {queued} record(s) from {len(args.files)} file(s); {skipped} skipped")
    return cmd_sync(config, args)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `telemetry` command."""
    parser = argparse.ArgumentParser(prog="telemetry", description="Local Telemetry SDK tools")
    parser.add_argument("--version", action="version", version=f"telemetry {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "status", help="base dir, pending/delivered/rejected counts, console reachable (exit 1: it is not)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for /health")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("sync", help="deliver pending records now (exit 0: none left, 1: some left)")
    p.add_argument("--timeout", type=float, default=30.0, help="give up after this many seconds")
    p.set_defaults(func=cmd_sync)
    p = sub.add_parser(
        "replay-dead-letters", help="send the dead-lettered lines again (exit 0: all delivered)"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="give up syncing after this long")
    p.set_defaults(func=cmd_replay)
    p = sub.add_parser("tail", help="follow the spool, human-readable")
    p.add_argument("-n", "--lines", type=int, default=10, help="lines of history to show first")
    p.add_argument("--no-follow", dest="follow", action="store_false", help="print and exit")
    p.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_tail)
    p = sub.add_parser("import", help="send an older tool's NDJSON file(s) to the console")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--timeout", type=float, default=60.0, help="give up syncing after this long")
    p.set_defaults(func=cmd_import)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the `telemetry` command; return its exit code."""
    args = build_parser().parse_args(argv)
    if getattr(args, "timeout", 1) < 0:
        print("telemetry: --timeout must be ≥ 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = _config()
    except ConfigError as exc:
        print(f"telemetry: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(config, args)
    except KeyboardInterrupt:
        return EXIT_PENDING if args.command in ("sync", "import", "replay-dead-letters") else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
