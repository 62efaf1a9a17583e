"""One error hierarchy for the whole project.

Adapters classify every provider failure once, at the edge, into `Retryable` or
`Permanent`; nothing above adapters/ looks at HTTP. `ConfigError` and `DataError`
are for users: their message is one line saying what, where, and what to do.
No message ever carries an API key.
"""

from __future__ import annotations


class CommitteeError(Exception):
    """Base of every error this project raises on purpose."""


class Retryable(CommitteeError):
    """A failure worth trying again (429, 408, 5xx, reset, timeout, garbled body).

    `after_s` is the server's requested delay (Retry-After) when it sent one.
    `rate_limited` marks 429s, which also shrink a lane's concurrency.
    """

    def __init__(self, reason: str, *, after_s: float | None = None, rate_limited: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.after_s = after_s
        self.rate_limited = rate_limited


class Permanent(CommitteeError):
    """A failure that will not go away by retrying (400/401/403/404, refusal, quota)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ConfigError(CommitteeError):
    """The run configuration is wrong; the message names the file and key."""


class DataError(CommitteeError):
    """A data file is missing or malformed; the message names the file and line."""
