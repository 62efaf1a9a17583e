"""The records of a provider Batch API job, shared by the batch clients, the engine, the store and the reports.

A batch teacher's requests go to the provider in submissions of many requests, each
request named by its `custom_id` (our content key of the request, `store.calls.request_key`),
and come back hours later at half the price. Before anything is sent the planned batch
and its requests are recorded in the store (`BatchPlanned`), so a killed run finds the
batches it submitted instead of paying for them again.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from core.calls import NO_DETAIL, ChatRequest, ChatResult, UsageDetail
from core.errors import UnusableKind

# Our view of a provider's batch states (each client maps its provider's names onto these):
# planned (recorded, not yet created at the provider), submitted (created, not yet running),
# running, completed (results ready or downloaded), failed (the provider rejected the batch as a whole),
# expired (the 24-hour window passed; finished requests still have results), cancelled.
BatchState = Literal["planned", "submitted", "running", "completed", "failed", "expired", "cancelled"]
BATCH_DONE: frozenset[BatchState] = frozenset(("completed", "failed", "expired", "cancelled"))


class BatchLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What one provider takes per batch: requests, bytes of the whole submission, batches at once."""

    max_requests: int
    max_bytes: int
    max_in_flight: int


class BatchItem(msgspec.Struct, frozen=True, kw_only=True):
    """One request of a batch: its content key as `custom_id` and the request itself."""

    custom_id: str
    request: ChatRequest


class BatchStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A batch as the provider reports it when polled.

    `succeeded` / `errored`: requests finished each way so far (`errored` includes expired
    and cancelled requests). `error`: the provider's reason for a failed batch, one line.
    `queue_full`: a failed batch the provider refused for the work it already has queued
    (OpenAI's `token_limit_exceeded`), not for its content: its requests never ran, and
    go again once fewer batches are out.
    """

    batch_id: str
    state: BatchState
    total: int = 0
    succeeded: int = 0
    errored: int = 0
    error: str | None = None
    queue_full: bool = False


class BatchOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """One request's result in a downloaded batch: `result` when it succeeded, else `error`
    (one line) and `retryable` (worth submitting again: a server error, expiry, cancellation).

    `unusable`: the request was answered and billed but without usable text (as
    `core.errors.Unusable` in the sync path: filtered, refused, truncated, empty), with the
    usage the provider reported in `input_tokens` / `output_tokens` / `detail` (None: none
    reported), so the engine bills it as the sync lane does.
    """

    custom_id: str
    result: ChatResult | None = None
    error: str | None = None
    retryable: bool = False
    http_status: int | None = None
    unusable: UnusableKind | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    detail: UsageDetail = NO_DETAIL
