"""The providers' Batch APIs behind one protocol: submit many requests, poll, download the results.

Each provider's module speaks its own protocol (OpenAI files + batches, Anthropic message
batches, Gemini batchGenerateContent); the engine sees only `BatchApi`, made by `batch_api`,
and cuts a teacher's requests into submissions within `BatchApi.limits` (engine/batch_lane.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Protocol

from core.batch import BatchItem, BatchLimits, BatchOutcome, BatchStatus

if TYPE_CHECKING:
    import aiohttp

    from core.config import TeacherSection


class BatchApi(Protocol):
    """One teacher's access to its provider's Batch API (the key stays inside, never in errors).

    `submit` creates a batch of `items` remembered by the provider under `tag` (metadata or
    display name) and returns the provider's batch id; a create call whose answer was lost is
    not repeated before `find` has looked for the batch. `find` returns the id of a batch
    submitted under `tag` (a run killed after creating it but before recording its id), None
    if there is none: pass the batch's `custom_ids` and `since` (a Unix time before it was
    planned), which Anthropic needs (its batches carry no tag) and the others use to stop
    listing early, and `exclude` the ids already recorded. `results` yields one outcome per
    request of a finished batch, failed requests included, and requests missing from it as
    not run (retryable); a line it cannot read or a `custom_id` it did not send raises
    `Permanent` (core/errors.py) naming the batch and the line. Control calls are retried on
    429/5xx and lost connections; what still fails raises `Retryable`, `Permanent` or
    `AccountError` naming the teacher and the batch.
    """

    limits: BatchLimits

    def item_bytes(self, item: BatchItem) -> int: ...
    async def submit(self, items: Sequence[BatchItem], *, tag: str) -> str: ...
    async def find(
        self,
        tag: str,
        *,
        custom_ids: frozenset[str] = frozenset(),
        since: float | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> str | None: ...
    async def status(self, batch_id: str) -> BatchStatus: ...
    def results(self, batch_id: str, custom_ids: frozenset[str]) -> AsyncIterator[BatchOutcome]: ...
    async def cancel(self, batch_id: str) -> None: ...


def batch_api(
    section: TeacherSection, session: aiohttp.ClientSession, api_key: str, *, base_url: str | None = None
) -> BatchApi:
    """The Batch API client of a `mode = "batch"` teacher, over `session` (which it does not close).

    `base_url` overrides the section's (the emulator's address for `base_url = "emulator"`);
    unset, the provider's own. `batch_max_requests` lowers the provider's request limit.
    Raises ConfigError for a host with no Batch API (config validation already refuses it).
    """
    import msgspec

    from adapters.batch import anthropic, gemini, openai
    from adapters.batch.http import BatchHttp
    from adapters.client import adapter_for
    from core.errors import ConfigError

    if section.host not in (None, "openai"):
        raise ConfigError(
            f"teacher {section.name!r}: host {section.host!r} has no Batch API; set mode = 'sync' "
            "or use the provider directly"
        )
    adapter = adapter_for(section.provider)
    url = (base_url or section.base_url or adapter.DEFAULT_BASE_URL).rstrip("/")
    http = BatchHttp(session, teacher=section.name, api_key=api_key, headers=adapter.headers(api_key))
    module = {"openai": openai, "anthropic": anthropic, "gemini": gemini}[section.provider]
    limits = module.LIMITS
    if section.batch_max_requests is not None and section.batch_max_requests < limits.max_requests:
        limits = msgspec.structs.replace(limits, max_requests=section.batch_max_requests)
    kind = {"openai": openai.OpenAIBatches, "anthropic": anthropic.AnthropicBatches, "gemini": gemini.GeminiBatches}
    return kind[section.provider](http, base_url=url, limits=limits)
