"""FAIR's joint objective (Li et al. 2025, eq. 3): learn from mistakes and from rationales at once.

    loss = alpha * CE(feedback tokens) + (1 - alpha) * CE(rationale tokens)

A micro-batch holds both sequences of each of its samples, the feedback rows first
and the rationale rows after them (`trainer.data.collate`), so both parts of a
sample always land in the same optimizer step.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


class LossParts(NamedTuple):
    """The joint loss (what backward runs on) and its two parts (what the log shows)."""

    total: torch.Tensor
    feedback: torch.Tensor
    rationale: torch.Tensor


def _token_mean_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the positions whose label is not IGNORE_INDEX."""
    # Position t predicts token t+1.
    shifted_logits = logits[:, :-1, :].reshape(-1, logits.size(-1)).float()
    shifted_labels = labels[:, 1:].reshape(-1)
    total = F.cross_entropy(shifted_logits, shifted_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    count = (shifted_labels != IGNORE_INDEX).sum().clamp(min=1)
    return total / count


def fair_loss(logits: torch.Tensor, labels: torch.Tensor, n_feedback: int, alpha: float) -> LossParts:
    """The joint loss of one micro-batch.

    `logits` is (rows, seq, vocab), `labels` (rows, seq) with prompt and padding
    positions set to -100; rows `[:n_feedback]` are learn-from-mistakes sequences,
    the rest learn-from-rationale ones.

    Normalisation, stated once: each part is the mean over its own response tokens in
    this micro-batch (so a long rationale does not drown out a short feedback, and
    alpha keeps its meaning), and nothing here divides by gradient-accumulation steps:
    `engine.backward` already scales by 1/grad_accum, and dividing again would shrink
    the effective learning rate by that factor.
    """
    feedback = _token_mean_ce(logits[:n_feedback], labels[:n_feedback])
    rationale = _token_mean_ce(logits[n_feedback:], labels[n_feedback:])
    return LossParts(alpha * feedback + (1.0 - alpha) * rationale, feedback, rationale)
