"""The providers' Batch APIs behind one protocol: submit many requests, poll, download the results.

Each provider's module speaks its own protocol (OpenAI files + batches, Anthropic message
batches, Gemini batchGenerateContent); the engine sees only `BatchApi`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from core.batch import BatchItem, BatchLimits, BatchOutcome, BatchStatus


class BatchApi(Protocol):
    """One teacher's access to its provider's Batch API (the key stays inside, never in errors).

    `submit` creates a batch of `items` remembered by the provider under `tag` (metadata or
    display name) and returns the provider's batch id. `find` returns the id of a batch
    submitted under `tag` (a run killed after creating it but before recording its id),
    None if there is none. `results` yields one outcome per request of a finished batch,
    failed requests included; a line it cannot read or a `custom_id` it did not send raises
    `Permanent` (core/errors.py) naming the batch and the line.
    """

    limits: BatchLimits

    def item_bytes(self, item: BatchItem) -> int: ...
    async def submit(self, items: Sequence[BatchItem], *, tag: str) -> str: ...
    async def find(self, tag: str) -> str | None: ...
    async def status(self, batch_id: str) -> BatchStatus: ...
    def results(self, batch_id: str, custom_ids: frozenset[str]) -> AsyncIterator[BatchOutcome]: ...
    async def cancel(self, batch_id: str) -> None: ...
