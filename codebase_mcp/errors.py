"""The one base class of errors whose message is written for people.

Raise a subclass where a request or a setting cannot be served and the message says why and what
to do: the CLI prints it as one line without a traceback (codebase_mcp/cli.py's `main`) and the
gateway answers it as an MCP tool error (mcp_gateway/server.py's middleware), so neither needs to
know each kind. Anything else is a bug: the CLI shows its traceback and the gateway masks it.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure to report to its reader as it is: the message names the cause and the remedy."""


class NotFoundError(UserError):
    """What the request names does not exist (or belongs to another project: the same answer)."""


class ConflictError(UserError):
    """The request cannot be applied in the current state (a finished job cannot be cancelled)."""


class AccessDeniedError(UserError):
    """The caller's token does not allow this."""
