"""FAIR's joint loss against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.loss import IGNORE_INDEX, fair_loss

M = IGNORE_INDEX


def _nll(row: list[float], target: int) -> float:
    """-log softmax(row)[target], written out."""
    return -(row[target] - math.log(sum(math.exp(v) for v in row)))


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """One sample: a feedback row (2 response tokens) and a rationale row (1 response token), vocab 3."""
    logits = torch.tensor(
        [
            [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0], [0.0, 0.0, 3.0], [9.0, 9.0, 9.0]],
            [[0.2, 0.1, 0.0], [1.0, -1.0, 0.5], [4.0, 4.0, 4.0], [7.0, 0.0, 0.0]],
        ]
    )
    # Position t's logits predict label t+1; -100 marks prompt and padding.
    labels = torch.tensor([[M, M, 1, 2], [M, 0, M, M]])
    return logits, labels


def test_joint_loss_matches_a_hand_computation(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    logits, labels = batch
    # Feedback row: label 1 at t=2 is predicted by position 1, label 2 at t=3 by position 2.
    feedback = (_nll([0.5, 2.0, 0.0], 1) + _nll([0.0, 0.0, 3.0], 2)) / 2
    # Rationale row: label 0 at t=1 is predicted by position 0.
    rationale = _nll([0.2, 0.1, 0.0], 0)

    parts = fair_loss(logits, labels, n_feedback=1, alpha=0.3)

    assert parts.feedback.item() == pytest.approx(feedback, rel=1e-6)
    assert parts.rationale.item() == pytest.approx(rationale, rel=1e-6)
    assert parts.total.item() == pytest.approx(0.3 * feedback + 0.7 * rationale, rel=1e-6)


def test_each_part_is_a_mean_over_its_own_response_tokens() -> None:
    """Two feedback rows with 1 and 3 response tokens weigh per token, not per row."""
    logits = torch.zeros(3, 5, 4)
    logits[0, 0, 1] = 2.0  # row 0's single response token is well predicted
    labels = torch.tensor([[M, 1, M, M, M], [M, 1, 2, 3, M], [M, 0, M, M, M]])
    parts = fair_loss(logits, labels, n_feedback=2, alpha=1.0)
    good = _nll([0.0, 2.0, 0.0, 0.0], 1)
    assert parts.feedback.item() == pytest.approx((good + 3 * math.log(4)) / 4, rel=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_alpha_at_either_end_is_a_single_loss(batch: tuple[torch.Tensor, torch.Tensor], alpha: float) -> None:
    logits, labels = batch
    parts = fair_loss(logits, labels, n_feedback=1, alpha=alpha)
    single = parts.feedback if alpha == 1.0 else parts.rationale
    assert parts.total.item() == pytest.approx(single.item(), rel=1e-7)
    assert parts.feedback.item() != pytest.approx(parts.rationale.item())


def test_gradient_reaches_only_response_positions(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    logits, labels = batch
    logits = logits.clone().requires_grad_(True)
    fair_loss(logits, labels, n_feedback=1, alpha=0.5).total.backward()
    touched = logits.grad.abs().sum(-1) > 0
    # Feedback row predicts from positions 1 and 2; rationale row from position 0.
    assert touched.tolist() == [[False, True, True, False], [True, False, False, False]]
