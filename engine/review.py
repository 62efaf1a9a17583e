"""Peer-review decisions: when a rationale is accepted, and when a review cannot change that.

The paper accepts a rationale when the mean of its valid peer scores (1..5) is at
least the threshold (4.0); the authors' released code effectively used mean > 3,
i.e. threshold 3.5 for two integer scores. Invalid scores (None) are left out of
the mean; a rationale with no valid score is not accepted.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from engine.config import ReviewSection


class DecisionSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The `[review]` settings a sample was decided with; a rerun with others decides it again."""

    threshold: float
    skip_decided: bool
    skip_wrong_answer: bool


def decision_settings(review: ReviewSection) -> DecisionSettings:
    """The part of `[review]` that changes a decision (not the cap, not the output options)."""
    return DecisionSettings(
        threshold=review.threshold, skip_decided=review.skip_decided, skip_wrong_answer=review.skip_wrong_answer
    )


def mean_score(scores: Iterable[int | None]) -> float | None:
    """Mean of the valid scores, or None when there is none."""
    valid = [s for s in scores if s is not None]
    return sum(valid) / len(valid) if valid else None


def accepted(scores: Iterable[int | None], threshold: float) -> bool:
    """The paper's rule: mean of valid scores >= threshold."""
    mean = mean_score(scores)
    return mean is not None and mean >= threshold


def decided(scores: Iterable[int | None], pending: int, threshold: float) -> bool | None:
    """The acceptance that no outcome of the `pending` reviews can change, else None.

    Each pending review may come back 1..5 or invalid (left out of the mean), so
    the reachable means are those with any number j of the pending reviews valid
    at the extremes: adding 1s pulls the mean down monotonically, adding 5s up.
    """
    valid = [s for s in scores if s is not None]
    total, n = sum(valid), len(valid)
    if pending == 0:
        return accepted(valid, threshold)
    best = (total + 5 * pending) / (n + pending)
    worst = (total + 1 * pending) / (n + pending)
    current = total / n if n else None
    if best < threshold and (current is None or current < threshold):
        return False
    if current is not None and current >= threshold and worst >= threshold:
        return True
    return None
