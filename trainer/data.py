"""train.jsonl -> tokenized FAIR pairs -> length-bucketed micro-batches.

Each record gives two sequences: learn-from-mistakes (mistake prompt -> teacher
feedback) and learn-from-rationale (the student's question prompt -> accepted
rationale). Labels are -100 on prompt and padding tokens, so only responses are
learned. The batch order of an epoch is a pure function of (seed, epoch), which is
what makes a resumed run see exactly the batches the killed one would have.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import torch

from core.config import TruncationSide
from core.errors import ConfigError, DataError
from core.jsonl import decode_lines
from core.records import RecordDecoder, TrainRecord
from prompts.sets import PromptSet, prompt_set
from prompts.student import PromptFormat, response_suffix
from student.backend import encode_prompt
from trainer.loss import IGNORE_INDEX

# A global micro-batch's worth of samples times this many is sorted by length at once:
# big enough that neighbours have similar lengths, small enough that epochs still mix.
BUCKET_MICRO_BATCHES = 16


class Seq(msgspec.Struct, frozen=True):
    """One training sequence: `input_ids[:n_prompt]` is prompt (masked), the rest response."""

    input_ids: list[int]
    n_prompt: int


class Pair(msgspec.Struct, frozen=True):
    """Both sequences of one train.jsonl record; they always share a micro-batch."""

    id: str
    feedback: Seq
    rationale: Seq

    @property
    def length(self) -> int:
        return max(len(self.feedback.input_ids), len(self.rationale.input_ids))


class TruncationStats(msgspec.Struct):
    """How many sequences lost prompt tokens (left) or response tokens (tail) to max_length."""

    prompts: int = 0
    responses: int = 0


_record_decoder = RecordDecoder(TrainRecord)


def load_records(path: Path) -> list[TrainRecord]:
    """Read train.jsonl. Raises `DataError` naming the file (and line) when it is missing, empty or malformed."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read training data ({exc.strerror}); run the dataset stage first") from None
    records = list(decode_lines(path, lines, _record_decoder, "valid training record"))
    if not records:
        raise DataError(f"{path}: no training records; run the dataset stage first (or check its filters)")
    return records


def fit_sequence(
    prompt: list[int], response: list[int], max_length: int, stats: TruncationStats, side: TruncationSide = "left"
) -> Seq:
    """Cut a sequence to max_length: prompt from the left first, the response's tail only if it must.

    The prompt keeps at least a quarter of the window (or all of itself if shorter):
    a response trained without the question it answers teaches nothing. `side =
    "right"` is the FAIR authors' cut instead (their data.py): prompt + response cut
    at max_length from the right, so a long prompt loses its response first.
    """
    if len(prompt) + len(response) <= max_length:
        return Seq(prompt + response, len(prompt))
    if side == "right":
        stats.responses += 1
        stats.prompts += len(prompt) > max_length
        return Seq((prompt + response)[:max_length], min(len(prompt), max_length))
    min_prompt = min(len(prompt), max(1, max_length // 4))
    if len(response) > max_length - min_prompt:
        response = response[: max_length - min_prompt]
        stats.responses += 1
    keep = max_length - len(response)
    if keep < len(prompt):
        prompt = prompt[len(prompt) - keep :]
        stats.prompts += 1
    return Seq(prompt + response, len(prompt))


def tokenize_pairs(
    records: list[TrainRecord],
    tokenizer,
    fmt: PromptFormat,
    max_length: int,
    prompts: PromptSet | None = None,
    side: TruncationSide = "left",
) -> tuple[list[Pair], TruncationStats]:
    """Tokenize every record into a (feedback, rationale) pair, truncated to max_length.

    Raises `ConfigError` when max_length leaves no room for a response after even the
    shortest prompt: every sample would be cut, so the setting is wrong, not the data.
    """
    suffix = response_suffix(tokenizer)
    wording = prompts or prompt_set("committee")
    texts = [wording.feedback_prompt(tokenizer, fmt, r) for r in records]
    texts += [wording.rationale_prompt(tokenizer, fmt, r) for r in records]
    responses = [r.feedback.strip() + suffix for r in records] + [r.rationale.strip() + suffix for r in records]
    # Prompts are tokenized exactly as the exam and eval backends tokenize them; a
    # response continues its prompt, so it gets no special tokens of its own.
    prompt_ids = [encode_prompt(tokenizer, p) for p in texts]
    response_ids = tokenizer(responses, add_special_tokens=False)["input_ids"]

    shortest = min(len(p) for p in prompt_ids)
    if shortest >= max_length:
        raise ConfigError(
            f"[train].max_length = {max_length} is shorter than every prompt (the shortest is {shortest} tokens); "
            f"raise max_length"
        )
    stats = TruncationStats()
    n = len(records)
    sequences = [fit_sequence(p, r, max_length, stats, side) for p, r in zip(prompt_ids, response_ids, strict=True)]
    pairs = [Pair(rec.id, sequences[i], sequences[n + i]) for i, rec in enumerate(records)]
    return pairs, stats


def plan_epoch(
    lengths: list[int], *, micro_batch_size: int, world_size: int, grad_accum: int, seed: int, epoch: int
) -> list[list[int]]:
    """The epoch's global micro-batches (lists of sample indices), in training order.

    Samples are shuffled (seeded by seed and epoch), cut into buckets, sorted by length
    within a bucket and chunked, and the micro-batches shuffled again so lengths do not
    run downhill through the epoch. The count is rounded up to a multiple of
    world_size * grad_accum by repeating the epoch's first micro-batches (as torch's
    DistributedSampler pads): every rank then runs the same number of whole optimizer
    steps, so no collective waits forever and no accumulation straddles an epoch end.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    bucket = micro_batch_size * world_size * BUCKET_MICRO_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket):
        chunk = sorted(order[start : start + bucket].tolist(), key=lambda i: -lengths[i])
        batches += [chunk[i : i + micro_batch_size] for i in range(0, len(chunk), micro_batch_size)]
    batches = [batches[i] for i in rng.permutation(len(batches))]
    group = world_size * grad_accum
    missing = -len(batches) % group
    return batches + [batches[i % len(batches)] for i in range(missing)]


def rank_batches(plan: list[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """This rank's share of a plan: every world_size-th micro-batch, starting at its rank."""
    return plan[rank::world_size]


def padding_fraction(plan: list[list[int]], pairs: list[Pair]) -> float:
    """Share of the tokens in the planned batches that are padding (both parts padded together)."""
    padded = real = 0
    for batch in plan:
        width = max(pairs[i].length for i in batch)
        padded += 2 * len(batch) * width
        real += sum(len(pairs[i].feedback.input_ids) + len(pairs[i].rationale.input_ids) for i in batch)
    return 1.0 - real / padded if padded else 0.0


class Batch(msgspec.Struct):
    """Model inputs for one micro-batch: feedback rows first, then rationale rows."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    n_feedback: int
    n_tokens: int


def collate(pairs: list[Pair], pad_id: int) -> Batch:
    """Right-pad the batch's feedback and rationale sequences into one tensor of 2 * len(pairs) rows."""
    return collate_rows([p.feedback for p in pairs] + [p.rationale for p in pairs], len(pairs), pad_id)


def collate_rows(rows: list[Seq], n_first: int, pad_id: int) -> Batch:
    """Right-pad sequences into one batch; `n_first` says where the first kind of row ends (`Batch.n_feedback`)."""
    width = max(len(s.input_ids) for s in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for row, seq in enumerate(rows):
        ids = torch.tensor(seq.input_ids, dtype=torch.long)
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
        labels[row, seq.n_prompt : len(ids)] = ids[seq.n_prompt :]
    return Batch(input_ids, attention_mask, labels, n_first, int(attention_mask.sum()))
