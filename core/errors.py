"""One error hierarchy for the whole project.

Adapters classify every provider failure once, at the edge, into `Retryable`,
`Permanent` (with `AccountError` for an account that cannot pay or authenticate) or
`Unusable` (a billed answer without usable text); nothing above adapters/ looks at
HTTP. `ConfigError` and `DataError` are for users: their message is one line saying
what, where, and what to do. No message ever carries an API key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from core.calls import UsageDetail

UnusableKind = Literal["filtered", "refused", "truncated", "empty"]


class CommitteeError(Exception):
    """Base of every error this project raises on purpose."""


class Retryable(CommitteeError):
    """A failure worth trying again (429, 408, 5xx, reset, timeout, garbled body).

    `after_s` is the server's requested delay (Retry-After) when it sent one.
    `rate_limited` marks 429s and `overloaded` 5xx/529s: both slow the lane down.
    `possibly_billed` marks an attempt that reached the provider and was abandoned
    (timeout, reset, cut body): the model may have run and been billed.
    `http_status` is the raw status when a response came back.
    """

    def __init__(
        self,
        reason: str,
        *,
        after_s: float | None = None,
        rate_limited: bool = False,
        overloaded: bool = False,
        possibly_billed: bool = False,
        http_status: int | None = None,
    ):
        super().__init__(reason)
        self.reason = reason
        self.after_s = after_s
        self.rate_limited = rate_limited
        self.overloaded = overloaded
        self.possibly_billed = possibly_billed
        self.http_status = http_status


class Permanent(CommitteeError):
    """A failure that will not go away by retrying (400/404, prompt blocked)."""

    def __init__(self, reason: str, *, http_status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.http_status = http_status


class AccountError(Permanent):
    """The teacher's account cannot be used: out of quota, out of credit, key refused (401/403).

    Permanent for every call to this teacher until a person acts, so a lane's circuit
    breaker stops sending to it after a few of these. `cause` says it in a few words
    ("out of quota", "credit balance too low", "API key refused").
    """

    def __init__(self, reason: str, *, cause: str, http_status: int | None = None):
        super().__init__(reason, http_status=http_status)
        self.cause = cause


class Unusable(CommitteeError):
    """A 2xx answer without usable text, billed all the same.

    `kind`: `filtered` (content filter / safety), `refused` (the model declined),
    `truncated` (max_tokens reached before any text, as when thinking eats the
    budget), `empty` (no text, no stated reason). `input_tokens`/`output_tokens` are
    the provider-reported usage, None when it reported none; `detail` its reasoning and
    cached parts (a `core.calls.UsageDetail`, None: none reported).
    """

    def __init__(
        self,
        kind: UnusableKind,
        reason: str,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        http_status: int = 200,
    ):
        super().__init__(reason)
        self.kind: UnusableKind = kind
        self.reason = reason
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.http_status = http_status
        self.detail: UsageDetail | None = None


class ConfigError(CommitteeError):
    """The run configuration is wrong; the message names the file and key."""


class DataError(CommitteeError):
    """A data file is missing or malformed; the message names the file and line."""
