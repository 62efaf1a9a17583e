"""What the emulator saw, per model: the ground truth a client is measured against."""

from __future__ import annotations

import hashlib

import msgspec

from emulator.spec import AnswerRequest


class ModelStats(msgspec.Struct, kw_only=True):
    """Counters of one model.

    `accepted` passed the rate limiter (and was charged); `faults` counts injected
    faults; `completed` counts 200s with a proper answer, whose tokens are summed.
    `billed_*` is everything the account was charged: proper answers, and with
    `Billing` on, answers without usable text and requests whose client left
    (`abandoned` counts those, `abandoned_billed` the ones charged). `quota_refused`
    counts out-of-quota answers, `overloaded` overload answers (neither charged).
    `completed_keys` counts completed answers per request content (`content_key`),
    and `duplicates` how many completed answers repeated a key already completed:
    a client that never pays twice keeps it at 0. `billed_keys` counts billed requests
    per content key, to match against the client's own per-request records.

    Batch APIs: `batch_requests` counts requests received inside batches (not in `received`);
    `batch_billed` / `batch_input_tokens` / `batch_output_tokens` are the part of `billed_*`
    billed through a batch, at half price; `batch_errored`, `batch_expired`, `batch_cancelled`
    count batch requests that came back without an answer (never billed). `batch_ids` counts
    billed batch requests per `custom_id` (Gemini: metadata key), `billed_keys` counts them
    with the sync ones per content key: a client that pays once keeps both at 1.
    """

    received: int = 0
    accepted: int = 0
    rejected_429: int = 0
    completed: int = 0
    faults: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    duplicates: int = 0
    billed_requests: int = 0
    billed_input_tokens: int = 0
    billed_output_tokens: int = 0
    # Parts of the billed tokens: thinking (in output), cache reads and writes (in input).
    billed_reasoning_tokens: int = 0
    billed_cache_read_tokens: int = 0
    billed_cache_write_tokens: int = 0
    abandoned: int = 0
    abandoned_billed: int = 0
    quota_refused: int = 0
    overloaded: int = 0
    batch_requests: int = 0
    batch_billed: int = 0
    batch_input_tokens: int = 0
    batch_output_tokens: int = 0
    batch_errored: int = 0
    batch_expired: int = 0
    batch_cancelled: int = 0
    completed_keys: dict[str, int] = {}
    billed_keys: dict[str, int] = {}
    batch_ids: dict[str, int] = {}


class EmulatorStats(msgspec.Struct, kw_only=True):
    """Per-model counters, their totals (without keys), and requests refused before a model was known."""

    models: dict[str, ModelStats]
    total: ModelStats
    unauthorized: int = 0  # 401: no auth header
    bad_requests: int = 0  # 400/404: unreadable body or unknown path
    batches_created: int = 0  # batches accepted by a Batch API (failed ones included)
    batches_refused: int = 0  # batch creations refused (over a limit, malformed)


_key_encoder = msgspec.json.Encoder()


def content_key(ask: AnswerRequest) -> str:
    """sha256 (first 128 bits, hex) of the canonical JSON of provider, model, messages and sampling."""
    canonical = _key_encoder.encode((ask.provider, ask.model, ask.messages, ask.temperature, ask.top_p, ask.max_tokens))
    return hashlib.sha256(canonical).hexdigest()[:32]


_KEYED = ("completed_keys", "billed_keys", "batch_ids")


def snapshot(
    models: dict[str, ModelStats], unauthorized: int, bad_requests: int, batches: tuple[int, int] = (0, 0)
) -> EmulatorStats:
    """An independent copy of the counters, with totals; `batches` is (created, refused)."""
    replace = msgspec.structs.replace
    copies = {name: replace(s, **{k: dict(getattr(s, k)) for k in _KEYED}) for name, s in models.items()}
    total = ModelStats()
    for s in copies.values():
        for field in ModelStats.__struct_fields__:
            if field not in _KEYED:
                setattr(total, field, getattr(total, field) + getattr(s, field))
    return EmulatorStats(
        models=copies,
        total=total,
        unauthorized=unauthorized,
        bad_requests=bad_requests,
        batches_created=batches[0],
        batches_refused=batches[1],
    )
