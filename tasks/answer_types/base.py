"""What every answer type shares: the graded-reply record, the grader error, the default methods."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from core.errors import CommitteeError


class Graded(msgspec.Struct, frozen=True):
    """A reply graded: its final answer (None: none found) and whether it is right."""

    answer: str | None
    correct: bool


class GraderError(CommitteeError):
    """A user's `module:function` grader raised or returned something unusable; the message names it and the sample."""


class Rule:
    """The methods most types share; each type overrides what differs.

    A base class rather than free functions because `grade` must call the subclass's
    own `extract` and `correct`, and a custom grader replaces `grade` as a whole.
    """

    __slots__ = ()

    def extract(self, text: str, options: Sequence[str] = ()) -> str | None:
        raise NotImplementedError

    def correct(self, predicted: str | None, gold: str, options: Sequence[str] = (), *, sample_id: str = "") -> bool:
        raise NotImplementedError

    def grade(self, text: str, gold: str, options: Sequence[str] = (), *, sample_id: str = "") -> Graded:
        """The final answer `extract` finds in `text` and its verdict."""
        answer = self.extract(text, options)
        return Graded(answer, self.correct(answer, gold, options, sample_id=sample_id))

    def hint(self, gold: str, options: Sequence[str] = ()) -> str:
        """The gold answer as teachers are shown it: as it is."""
        return gold

    def written(self, answer: str) -> str:
        """`answer` as a reply states it: as it is."""
        return answer
