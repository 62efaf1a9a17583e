"""Batches within a provider's limits: `split_items` packs requests into submissions, `check_items` vets one."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from core.batch import BatchItem, BatchLimits


def split_items(
    items: Sequence[BatchItem], limits: BatchLimits, item_bytes: Callable[[BatchItem], int]
) -> list[list[BatchItem]]:
    """`items` in order, cut into submissions of at most `limits.max_requests` requests and `limits.max_bytes` bytes.

    Raises ValueError for a single request larger than a whole batch may be.
    """
    batches: list[list[BatchItem]] = []
    current: list[BatchItem] = []
    size = 0
    for item in items:
        n = item_bytes(item)
        if n > limits.max_bytes:
            raise ValueError(f"request {item.custom_id} is {n} bytes, over the {limits.max_bytes} a batch may hold")
        if current and (len(current) >= limits.max_requests or size + n > limits.max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(item)
        size += n
    if current:
        batches.append(current)
    return batches


def check_items(items: Sequence[BatchItem], limits: BatchLimits, item_bytes: Callable[[BatchItem], int]) -> None:
    """Raises ValueError unless `items` make one valid submission: some, with distinct custom_ids,
    all for one model (every provider's batch serves one), within `limits` (use `split_items`)."""
    if not items:
        raise ValueError("a batch needs at least one request")
    if len({item.custom_id for item in items}) != len(items):
        raise ValueError("custom_ids repeat within the batch; each request goes in once")
    models = {item.request.model for item in items}
    if len(models) > 1:
        raise ValueError(f"a batch serves one model, got {sorted(models)}")
    if len(items) > limits.max_requests:
        raise ValueError(f"{len(items)} requests, over the {limits.max_requests} a batch may hold; split them")
    size = sum(item_bytes(item) for item in items)
    if size > limits.max_bytes:
        raise ValueError(f"{size} bytes, over the {limits.max_bytes} a batch may hold; split them")
