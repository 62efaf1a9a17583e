"""Direct Preference Optimization (Rafailov et al. 2023, eq. 7) on reviewed rationale pairs.

    loss = -log sigmoid(beta * ((log pi(y_c|x) - log ref(y_c|x)) - (log pi(y_r|x) - log ref(y_r|x))))

Log-probabilities are sums over response tokens (prompt and padding labels are
-100), as in the paper and TRL's `DPOTrainer` (sigmoid loss). The reference
log-probabilities are computed once, before training, from the starting model.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from trainer.loss import IGNORE_INDEX


class DpoParts(NamedTuple):
    """The loss (what backward runs on) and what the log shows: reward accuracy and margin."""

    total: torch.Tensor
    accuracy: torch.Tensor
    margin: torch.Tensor


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row, the summed log-probability of the tokens whose label is not IGNORE_INDEX; shape (rows,)."""
    # Position t predicts token t+1.
    shifted = logits[:, :-1, :].float()
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    picked = torch.gather(shifted.log_softmax(-1), 2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> DpoParts:
    """The mean DPO loss of a micro-batch; every argument has one entry per pair.

    Like `fair_loss`, nothing here divides by gradient-accumulation steps:
    `engine.backward` does.
    """
    chosen_reward = beta * (policy_chosen - ref_chosen)
    rejected_reward = beta * (policy_rejected - ref_rejected)
    logits = chosen_reward - rejected_reward
    return DpoParts(
        -F.logsigmoid(logits).mean(),
        (logits > 0).float().mean().detach(),
        logits.mean().detach(),
    )
