"""A sample gives up its place among `samples_in_flight` when it waits on a provider batch.

The scheduler bounds half-done samples with a capacity limiter (backpressure on the
mistakes stream). A batch teacher answers in minutes to hours, so in a mixed committee
every slot would soon hold a sample parked on a batch and the sync teachers would have
no new sample to work on. So the sample's worker registers how to release its slot
(`sample_slot`), and a wait on a batch calls `park()`, which releases it once.

The slot is not taken back when the batch answers: what the sample still needs
(reviews) goes through the teachers' lanes, which bound the work in flight anyway,
and a parked sample holds only its texts. Taking it back could also deadlock: a
sample holding a slot may be waiting (joined) on the very request whose answer
would let a parked sample return.

Parked samples are bounded too, by `PARKED_PER_SLOT` times `samples_in_flight`: without
a bound every mistake of a dataset would be started and held in memory while its
batches run. A sample gives up its slot only once it holds a parked place (waiting for
one with its slot still held), so samples still working never wait on parked ones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Parked samples per `samples_in_flight` slot: enough to fill large batches (512 slots park
# 10,240 samples), few enough to hold in memory (a parked sample is its texts, a few kB).
PARKED_PER_SLOT = 20

# Set in a sample worker's task; the tasks it starts inherit it.
_park: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar("committee_sample_slot", default=None)


@contextmanager
def sample_slot(park_sample: Callable[[], Awaitable[None]]) -> Iterator[None]:
    """Within the block (and the tasks started in it), `park()` awaits `park_sample`; it must be idempotent."""
    token = _park.set(park_sample)
    try:
        yield
    finally:
        _park.reset(token)


async def park() -> None:
    """The calling sample is about to wait on a batch: trade its slot for a parked place (nothing outside a
    `sample_slot`)."""
    park_sample = _park.get()
    if park_sample is not None:
        await park_sample()
