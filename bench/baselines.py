"""The two clients the engine is measured against, written the way they usually are.

- `sequential`: one call at a time, as the FAIR authors' released code calls its
  teachers (zhuochunli/Learn-from-Committee `collect_teacher_res.py`), here given
  simple retries so that it finishes rather than dropping calls.
- `gather`: `asyncio.gather` over one coroutine per request behind a semaphore: no
  rate limiter, no shared backoff; a failed attempt sleeps the server's retry-after
  (or 1 s) and tries again. Its storm of 429s against a limit is what it measures.

Both use the same `ChatClient` as the engine, so only the dispatch differs. They are
deliberately naive (gather even builds every coroutine up front): do not copy them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from core.calls import ChatRequest
from core.errors import Permanent, Retryable
from engine.lane import Completer

# record(completed, latency_s, output_tokens, retries)
Record = Callable[[bool, float, int, int], None]


async def _call_with_simple_retries(
    client: Completer, request: ChatRequest, *, timeout_s: float, max_attempts: int, record: Record
) -> None:
    started = time.monotonic()
    attempt = 0  # stays 0 only when max_attempts < 1: nothing sent, no retries
    for attempt in range(1, max_attempts + 1):
        try:
            result = await client.complete(request, timeout_s=timeout_s)
        except Permanent:
            break
        except Retryable as exc:
            if attempt < max_attempts:
                await asyncio.sleep(exc.after_s if exc.after_s else 1.0)
            continue
        record(True, time.monotonic() - started, result.output_tokens, attempt - 1)
        return
    record(False, time.monotonic() - started, 0, max(attempt - 1, 0))


async def sequential(
    client: Completer, requests: Iterable[ChatRequest], *, timeout_s: float, max_attempts: int, record: Record
) -> None:
    """One call at a time, each retried until it completes or runs out of attempts."""
    for request in requests:
        await _call_with_simple_retries(client, request, timeout_s=timeout_s, max_attempts=max_attempts, record=record)


async def gather(
    client: Completer,
    requests: Iterable[ChatRequest],
    *,
    concurrency: int,
    timeout_s: float,
    max_attempts: int,
    record: Record,
) -> None:
    """Every request at once through `asyncio.gather`, at most `concurrency` in flight."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(request: ChatRequest) -> None:
        async with semaphore:
            await _call_with_simple_retries(
                client, request, timeout_s=timeout_s, max_attempts=max_attempts, record=record
            )

    await asyncio.gather(*(one(r) for r in requests))
