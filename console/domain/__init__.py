"""What the console does with runs, events, stale runs, statistics and users, on a SQLAlchemy session. Imports no Flask."""
