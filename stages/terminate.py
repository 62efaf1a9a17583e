"""SIGTERM (a batch scheduler, `docker stop`, `kill`) stops anything that sends calls the way Ctrl-C does.

One helper for the run and for `--dry-run --pilot`, which buys calls too: the default
action would end the process with the store's queued rows unwritten.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import anyio

T = TypeVar("T")


class Terminated(Exception):
    """The run was stopped by SIGTERM; everything in hand is saved (and, for a run, the reports are written)."""


async def stop_on_sigterm(body: Callable[[], Awaitable[T]], on_stop: Callable[[], None] = lambda: None) -> T:
    """Await `body()`; SIGTERM meanwhile cancels it as Ctrl-C would, then raises `Terminated`.

    Cancellation lets the store commit everything queued and record the calls in flight.
    `on_stop` runs after either stop (SIGTERM, or Ctrl-C's cancellation, which goes on).

        result = await stop_on_sigterm(partial(_run_stages, ctx, stage), partial(write_reports, ctx))
    """
    terminated = False
    # Filled when the body returns; left empty only when SIGTERM cancelled it, which raises below.
    results: list[T] = []

    async def on_sigterm(signals, scope: anyio.CancelScope) -> None:
        nonlocal terminated
        async for _ in signals:
            terminated = True
            scope.cancel()
            return

    try:
        with _sigterm_receiver() as signals:
            async with anyio.create_task_group() as tg:
                if signals is not None:
                    tg.start_soon(on_sigterm, signals, tg.cancel_scope)
                results.append(await body())
                tg.cancel_scope.cancel()
    except anyio.get_cancelled_exc_class():
        # Ctrl-C: cancelled here, a KeyboardInterrupt once out of the event loop.
        on_stop()
        raise
    if terminated:
        on_stop()
        raise Terminated
    return results[0]


@contextmanager
def _sigterm_receiver() -> Iterator[AsyncIterator[signal.Signals] | None]:
    """SIGTERM's receiver, or None off the main thread, where Python lets no handler be set: there (the Python
    API beside a notebook's event loop) SIGTERM keeps its usual effect."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        yield signals
