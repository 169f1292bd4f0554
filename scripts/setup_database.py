#!/usr/bin/env python3
"""Create or upgrade the database (SQLite file or PostgreSQL) to the current schema.

Same as `python -m console db upgrade`; safe to run while consoles serve (it takes
the upgrade lock) and again and again (it does nothing when the schema is current).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from console.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["db", "upgrade", *sys.argv[1:]]))
