"""The Alembic scripts (env.py, versions/), installed as codebase_mcp.migrations."""
