"""Storage: engines and sessions, the tables, migrations, SQLite's write lock, the rollups, the insert watermark and the search index."""
