"""Database access shared by every component: DSN resolution, connections, migrations."""
