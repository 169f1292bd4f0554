#!/usr/bin/env python3
"""`python -m console retention` as a script: same options, same exit codes (see docs/operations.md)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from console.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["retention", *sys.argv[1:]]))
