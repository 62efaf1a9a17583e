"""The records a decided sample leaves behind: one line of dataset.jsonl each."""

from __future__ import annotations

from typing import Literal

import msgspec

from core.config import ReviewSection, TaskName


class DecisionSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The `[review]` settings a sample was decided with; a rerun with others decides it again."""

    threshold: float
    skip_decided: bool
    skip_wrong_answer: bool
    # Defaults: samples stored before these settings existed were decided without them.
    strict: bool = False
    peer_review: bool = True
    single_teacher: str | None = None
    # Scores read from structured output, not brackets: other calls, so another decision.
    structured: bool = False


def decision_settings(review: ReviewSection) -> DecisionSettings:
    """The part of `[review]` that changes a decision (not the cap, not the output options)."""
    return DecisionSettings(
        threshold=review.threshold,
        skip_decided=review.skip_decided,
        skip_wrong_answer=review.skip_wrong_answer,
        strict=review.strict,
        peer_review=review.peer_review,
        single_teacher=review.single_teacher,
        structured=review.structured,
    )


SkipReason = Literal["", "decided", "wrong_answer", "budget"]


class RationaleOutcome(msgspec.Struct, kw_only=True):
    """One teacher's rationale and what its peers made of it.

    `scores` maps reviewer -> parsed score (None when the reply held no valid
    1..5 score); reviews skipped by an option are absent and listed in `skipped`.
    `text` is None when the rationale call itself failed.
    """

    teacher: str
    text: str | None
    answer: str | None = None
    answer_correct: bool | None = None
    scores: dict[str, int | None] = {}
    skipped: dict[str, SkipReason] = {}
    mean: float | None = None
    accepted: bool = False


class FeedbackOutcome(msgspec.Struct, kw_only=True):
    teacher: str
    text: str | None


class DecidedSample(msgspec.Struct, kw_only=True):
    """A mistake after the teacher stages: dataset.jsonl's line format.

    `included` = at least one accepted rationale and one feedback. `missing`
    lists the calls that ended failed or were not sent (spending cap), e.g.
    "rationale:gpt" or "review:gemini->gpt"; a sample with missing calls is
    retried by the next run. `decided_with` records the `[review]` settings of the
    decision (None in samples stored before it was recorded).
    """

    id: str
    task: TaskName
    question: str
    gold: str
    student_answer: str
    student_final_answer: str | None = None
    context: str = ""
    options: tuple[str, ...] = ()
    rationales: list[RationaleOutcome] = []
    feedback: list[FeedbackOutcome] = []
    included: bool = False
    missing: list[str] = []
    decided_with: DecisionSettings | None = None
