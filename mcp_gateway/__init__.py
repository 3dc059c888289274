"""The MCP gateway (streamable HTTP): tools.py holds every tool, server.py wires them, serve.py runs them."""
