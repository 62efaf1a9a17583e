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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Set in a sample worker's task; the tasks it starts inherit it.
_release: ContextVar[Callable[[], None] | None] = ContextVar("committee_sample_slot", default=None)


@contextmanager
def sample_slot(release: Callable[[], None]) -> Iterator[None]:
    """Within the block (and the tasks started in it), `park()` calls `release`; it must be idempotent."""
    token = _release.set(release)
    try:
        yield
    finally:
        _release.reset(token)


def park() -> None:
    """The calling sample is about to wait on a batch: give up its slot (nothing outside a `sample_slot`)."""
    release = _release.get()
    if release is not None:
        release()
