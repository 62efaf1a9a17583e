"""Peer-review decisions: when a rationale is accepted, and when a review cannot change that.

The paper accepts a rationale when the mean of its valid peer scores (1..5) is at
least the threshold (4.0); the authors' released code used mean > 3
(`collect_teacher_res.py`), which is `threshold = 3` with `strict = true`: the same
as 3.5 for two integer scores, but not for three reviewers (a mean of 3.33).
Invalid scores (None) are left out of the mean; a rationale with no valid score is
not accepted.
"""

from __future__ import annotations

from collections.abc import Iterable


def mean_score(scores: Iterable[int | None]) -> float | None:
    """Mean of the valid scores, or None when there is none."""
    valid = [s for s in scores if s is not None]
    return sum(valid) / len(valid) if valid else None


def passes(mean: float | None, threshold: float, strict: bool = False) -> bool:
    """Whether a mean score is accepted: >= threshold (the paper), or > threshold when `strict` (the authors' code)."""
    if mean is None:
        return False
    return mean > threshold if strict else mean >= threshold


def accepted(scores: Iterable[int | None], threshold: float, strict: bool = False) -> bool:
    """The acceptance rule: mean of valid scores >= threshold (> when `strict`)."""
    return passes(mean_score(scores), threshold, strict)


def decided(scores: Iterable[int | None], pending: int, threshold: float, strict: bool = False) -> bool | None:
    """The acceptance that no outcome of the `pending` reviews can change, else None.

    Each pending review may come back 1..5 or invalid (left out of the mean), so
    the reachable means are those with any number j of the pending reviews valid
    at the extremes: adding 1s pulls the mean down monotonically, adding 5s up.
    """
    valid = [s for s in scores if s is not None]
    total, n = sum(valid), len(valid)
    if pending == 0:
        return accepted(valid, threshold, strict)
    best = (total + 5 * pending) / (n + pending)
    worst = (total + 1 * pending) / (n + pending)
    current = total / n if n else None
    if not passes(best, threshold, strict) and not passes(current, threshold, strict):
        return False
    if passes(current, threshold, strict) and passes(worst, threshold, strict):
        return True
    return None
