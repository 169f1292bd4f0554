"""The command line: `python -m console <command>` (`main.py`), one module per group of commands."""
