"""What the three batch clients share: control calls retried with backoff, JSONL lines, per-request outcomes.

The control calls (upload, create, poll, list, download, cancel) are few and cheap, so
they are retried here, in the adapter, on 408/409/429/5xx and lost connections, with
the OpenAI SDK's schedule (exponential from 0.5 s, capped at 8 s, a server's Retry-After
first) and full jitter. engine/backoff.py sits in a later layer, so this small loop
is the batch clients' own. Every error names the teacher and the batch (or the tag of
a batch being created); the API key is never in one.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

import aiohttp
import anyio
import msgspec

from adapters.classify import check_status, decode_success, error_for, shorten
from adapters.client import redacted, transport_error
from core.batch import BatchOutcome
from core.calls import NO_DETAIL, ChatResult
from core.errors import CommitteeError, Permanent, Retryable, Unusable

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
# A server asking for longer than this is honoured up to it; the next poll comes anyway.
MAX_RETRY_AFTER_S = 60.0
# Uploads and downloads of whole batches (up to hundreds of MB) take a while.
CONTROL_TIMEOUT_S = 600.0

# A JSON null as a Raw field's default: msgspec takes no `Raw | None`, so an absent body reads as this.
NULL = msgspec.Raw(b"null")
T = TypeVar("T")
Decode = Callable[[int, Mapping[str, str], bytes, float], ChatResult]
Sleep = Callable[[float], Awaitable[Any]]


class BatchHttp:
    """One teacher's control calls to its provider's Batch API: `call` sends, retries and classifies."""

    __slots__ = ("_api_key", "_headers", "_session", "_sleep", "_timeout", "max_attempts", "teacher")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        teacher: str,
        api_key: str,
        headers: Mapping[str, str],
        sleep: Sleep = anyio.sleep,
        max_attempts: int = MAX_ATTEMPTS,
        timeout_s: float = CONTROL_TIMEOUT_S,
    ) -> None:
        self._session = session
        self.teacher = teacher
        self._api_key = api_key
        # Auth headers go with each request, not the session: the session may serve other teachers.
        self._headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        self._sleep = sleep
        self.max_attempts = max_attempts
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 60.0))

    def __repr__(self) -> str:
        return f"BatchHttp(teacher={self.teacher!r})"

    def fail(self, where: str, reason: str, *, error: type[CommitteeError] = Permanent) -> CommitteeError:
        """A one-line error naming the teacher and `where` (the batch, or the tag of one being created)."""
        return error(self._clean(" ".join(f"teacher {self.teacher!r}: {where}: {reason}".split())))

    async def call(
        self,
        method: str,
        url: str,
        decoder: msgspec.json.Decoder[T],
        *,
        where: str,
        body: bytes | None = None,
        form: Callable[[], aiohttp.FormData] | None = None,
        params: Mapping[str, str] | None = None,
        resend: bool = True,
    ) -> T:
        """The body of a 2xx answer, decoded.

        Retried up to `max_attempts` on Retryable failures; with `resend=False` an attempt
        that may have reached the provider (a timeout, a connection lost mid-exchange, a
        garbled 2xx) is not repeated but raised, so the caller can look for what it created.
        Raises `Permanent` / `AccountError` / `Retryable` naming the teacher and `where`.
        """

        def read(status: int, headers: Mapping[str, str], raw: bytes) -> T:
            return decode_success(status, headers, raw, decoder)

        return await self._retrying(method, url, read, where=where, body=body, form=form, params=params, resend=resend)

    async def download(self, url: str, *, where: str) -> bytes:
        """The raw body of a 2xx answer to `GET url` (a results file), retried as `call` is."""
        return await self._retrying("GET", url, _raw, where=where, body=None, form=None, params=None, resend=True)

    async def _retrying(
        self,
        method: str,
        url: str,
        read: Callable[[int, Mapping[str, str], bytes], T],
        *,
        where: str,
        body: bytes | None,
        form: Callable[[], aiohttp.FormData] | None,
        params: Mapping[str, str] | None,
        resend: bool,
    ) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                status, headers, raw = await self._once(method, url, body=body, form=form, params=params)
                return read(status, headers, raw)
            except Retryable as exc:
                if attempt >= self.max_attempts or (exc.possibly_billed and not resend):
                    raise self._named(exc, where, attempt) from None
                delay_s = self._delay_s(exc, attempt)
                log.warning(
                    "teacher %r: %s: %s; attempt %d of %d, next in %.1f s",
                    self.teacher,
                    where,
                    self._clean(exc.reason),
                    attempt,
                    self.max_attempts,
                    delay_s,
                )
                await self._sleep(delay_s)
            except CommitteeError as exc:
                raise self._named(exc, where, attempt) from None

    async def _once(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None,
        form: Callable[[], aiohttp.FormData] | None,
        params: Mapping[str, str] | None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        headers = dict(self._headers)
        data: bytes | aiohttp.FormData | None = body
        if body is not None:
            headers["Content-Type"] = "application/json"
        elif form is not None:
            # A FormData is spent once sent: each attempt builds its own.
            data = form()
        try:
            async with self._session.request(
                method, url, data=data, params=params, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                return response.status, response.headers, await response.read()
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            raise transport_error(exc, url.split("?")[0], self._timeout.total or 0.0, self._timeout.connect) from None

    def _delay_s(self, exc: Retryable, attempt: int) -> float:
        if exc.after_s is not None and exc.after_s > 0:
            return min(exc.after_s, MAX_RETRY_AFTER_S)
        # Full jitter: many teachers polling one provider must not retry in step.
        return random.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1)))

    def _clean(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _named(self, exc: CommitteeError, where: str, attempts: int) -> CommitteeError:
        clean = redacted(exc, self._api_key) if self._api_key else exc
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        clean.reason = f"teacher {self.teacher!r}: {where}: {clean}{tries}"  # type: ignore[attr-defined]
        clean.args = (clean.reason,)  # type: ignore[attr-defined]
        return clean


def _raw(status: int, headers: Mapping[str, str], raw: bytes) -> bytes:
    check_status(status, headers, raw)
    return raw


def jsonl_lines(body: bytes) -> Iterator[tuple[int, bytes]]:
    """`(line number from 1, line)` for each non-blank line of a JSON Lines body."""
    for number, line in enumerate(body.split(b"\n"), start=1):
        if line.strip():
            yield number, line


def decode_line(decoder: msgspec.json.Decoder[T], line: bytes, fail: Callable[[str], CommitteeError], number: int) -> T:
    """One JSONL line decoded; a line that is not the JSON we expect raises `fail(...)` naming its number."""
    problem = _not_a_result(decoder, line, f"line {number} of the results")
    if isinstance(problem, str):
        raise fail(problem)
    return problem


def _not_a_result(decoder: msgspec.json.Decoder[T], line: bytes, where: str) -> T | str:
    try:
        return decoder.decode(line)
    except msgspec.DecodeError as exc:
        head = line[:60].decode("utf-8", "replace")
        return shorten(f"{where} is not a result ({exc}; starts {head!r})")


class Tally:
    """The requests of one batch's results so far: each answered once, none that it did not send.

    A line that cannot be read or names a custom_id not sent is noted and skipped, so the
    readable results after it still come out (each is paid for); `missing(...)` then raises
    `fail(...)` naming the first such line, since a request without a readable result may be
    one of them, paid and unreadable, and must not be sent again as if it never ran.
    """

    __slots__ = ("_custom_ids", "_fail", "_problems", "_seen")

    def __init__(self, custom_ids: frozenset[str], fail: Callable[[str], CommitteeError]) -> None:
        self._custom_ids = custom_ids
        self._fail = fail
        self._seen: set[str] = set()
        self._problems: list[str] = []

    def read(self, decoder: msgspec.json.Decoder[T], line: bytes, where: str) -> T | None:
        """The line decoded, or None (noted) when it is not the JSON we expect; `where` names it ("line 3")."""
        decoded = _not_a_result(decoder, line, where)
        if isinstance(decoded, str):
            self._problems.append(decoded)
            return None
        return decoded

    def first(self, custom_id: object, where: str) -> bool:
        """True for a request's first result; `where` ("line 3", "response 2") names it in an error."""
        if not isinstance(custom_id, str) or custom_id not in self._custom_ids:
            self._problems.append(f"{where} names custom_id {custom_id!r}, not sent in it")
            return False
        if custom_id in self._seen:
            log.warning("%s repeats the result of %s; the first one counts", where, custom_id)
            return False
        self._seen.add(custom_id)
        return True

    def problem(self, reason: str) -> None:
        """Note a result that cannot be told apart or read (see `missing`)."""
        self._problems.append(reason)

    def missing(self, why: str) -> Iterator[BatchOutcome]:
        """A not-run outcome, saying `why`, for each request without a result, in custom_id order.

        Raises `fail(...)` instead when a result could not be read (see the class).
        """
        if self._problems:
            more = f" (and {len(self._problems) - 1} more such lines)" if len(self._problems) > 1 else ""
            raise self._fail(self._problems[0] + more)
        for custom_id in sorted(self._custom_ids - self._seen):
            yield not_run(custom_id, why)


def answered(custom_id: str, decode: Decode, status: int, body: bytes) -> BatchOutcome:
    """The outcome of one request the provider answered with `status` and `body`, read by the
    teacher's sync `decode`: usage, reasoning and cache detail, refusals and structured scores
    come out exactly as in the sync path."""
    try:
        return BatchOutcome(custom_id=custom_id, result=decode(status, {}, body, 0.0), http_status=status)
    except Unusable as exc:
        return BatchOutcome(
            custom_id=custom_id,
            error=exc.reason,
            # As in the sync lane: a truncated answer is truncated again; the others may come out right.
            retryable=exc.kind != "truncated",
            http_status=status,
            unusable=exc.kind,
            input_tokens=exc.input_tokens,
            output_tokens=exc.output_tokens,
            detail=exc.detail or NO_DETAIL,
        )
    except (Retryable, Permanent) as exc:
        return failed(custom_id, exc)


def failed(custom_id: str, exc: CommitteeError) -> BatchOutcome:
    """The outcome of a request that failed inside the batch, from its classified error."""
    return BatchOutcome(
        custom_id=custom_id,
        error=" ".join(str(exc).split()),
        retryable=isinstance(exc, Retryable),
        http_status=getattr(exc, "http_status", None),
    )


def error_status(custom_id: str, status: int, detail: str) -> BatchOutcome:
    """The outcome of a request the provider reports failed with an HTTP-like `status` and a message."""
    return failed(custom_id, error_for(status, {}, shorten(detail)))


def not_run(custom_id: str, why: str) -> BatchOutcome:
    """The outcome of a request the provider never ran (expired, cancelled, missing): worth sending again."""
    return BatchOutcome(custom_id=custom_id, error=why, retryable=True)


async def create_once(
    create: Callable[[], Awaitable[str]], find: Callable[[], Awaitable[str | None]], *, attempts: int
) -> str:
    """The provider's id of a batch created by `create`, created at most once.

    `create` does not repeat an attempt that may have reached the provider (see `BatchHttp.call`,
    `resend=False`); after such an attempt `find` looks for the batch by its tag before trying
    again, so a lost answer to a create call never pays for the same batch twice.

    Raises `Permanent` only when no batch was created (the provider answered no, and no
    earlier attempt may have created one); `Retryable` when one may exist (look it up with `find`).
    """
    lost: Retryable | None = None
    for attempt in range(1, attempts + 1):
        try:
            return await create()
        except Permanent as exc:
            if lost is None:
                raise
            # An earlier attempt may have made the batch (a list can lag behind a create):
            # the caller must look again before sending its requests anywhere else.
            raise _maybe_created(lost, exc) from None
        except Retryable as exc:
            if not exc.possibly_billed and lost is None:
                # Never reached the provider (`call` retried it already): nothing was created.
                raise
            lost = lost or exc
            if not exc.possibly_billed or attempt == attempts:
                raise _maybe_created(lost, exc) from None
            try:
                found = await find()
            except CommitteeError as failed:
                raise _maybe_created(lost, failed) from None
            if found is not None:
                log.warning("%s; the batch was created all the same: %s", lost.reason, found)
                return found
    raise AssertionError("unreachable")  # pragma: no cover


def _maybe_created(lost: Retryable, last: CommitteeError) -> Retryable:
    return Retryable(f"{lost.reason}; the batch may have been created ({last})", possibly_billed=True)
