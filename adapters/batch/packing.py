"""A batch within its provider's limits: `check_items` vets one submission before it is sent."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from core.batch import BatchItem, BatchLimits


def check_items(items: Sequence[BatchItem], limits: BatchLimits, item_bytes: Callable[[BatchItem], int]) -> None:
    """Raises ValueError unless `items` make one valid submission: some, with distinct custom_ids,
    all for one model (every provider's batch serves one), within `limits` (the batch lane cuts work to them)."""
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
