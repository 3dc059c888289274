"""The MCP gateway (streamable HTTP). Not built yet: see issue 4."""
