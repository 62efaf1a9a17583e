"""A user's grader (`[[datasets]] answer.grader = "mypkg.grade:check"`) in place of a type's comparison.

The function is called as `check(reply, gold, options)`: `reply` the whole reply text
(or, when only an extracted answer is at hand, that answer), `gold` the canonical gold
answer of the answer `type`, `options` the question's options (a tuple, empty for
questions without). It returns a bool, or a number: a score, correct from `pass_score`
(default 0.5) up. The `type` still reads gold answers and the final answer that
records show. Anything it raises, or a result of another kind, stops the run with a
`GraderError` naming the grader and the sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.config import AnswerKind, AnswerSection
from core.graders import GraderFunction, import_grader
from tasks.answer_types.base import Graded, GraderError

if TYPE_CHECKING:
    from tasks.answer_types import AnswerType

DEFAULT_PASS_SCORE = 0.5


class CustomGraded:
    """`base`'s gold and extraction, with `check` deciding correctness."""

    __slots__ = ("_base", "_check", "_name", "_pass", "kind")
    kind: AnswerKind

    def __init__(self, base: AnswerType, check: GraderFunction, name: str, pass_score: float = DEFAULT_PASS_SCORE):
        self._base = base
        self._check = check
        self._name = name
        self._pass = pass_score
        self.kind = base.kind

    @classmethod
    def from_section(cls, base: AnswerType, section: AnswerSection) -> CustomGraded:
        """`section.grader` imported, around `base`; raises ValueError when it cannot be imported."""
        assert section.grader is not None
        pass_score = DEFAULT_PASS_SCORE if section.pass_score is None else section.pass_score
        return cls(base, import_grader(section.grader), section.grader, pass_score)

    def gold(self, raw: object, options: Sequence[str] = ()) -> str:
        """The type's gold answer."""
        return self._base.gold(raw, options)

    def extract(self, text: str, options: Sequence[str] = ()) -> str | None:
        """The type's final answer, for records and reports."""
        return self._base.extract(text, options)

    def correct(self, predicted: str | None, gold: str, options: Sequence[str] = (), *, sample_id: str = "") -> bool:
        """The grader's verdict on `predicted` as if it were the whole reply; None is never correct."""
        return predicted is not None and self._call(predicted, gold, options, sample_id)

    def grade(self, text: str, gold: str, options: Sequence[str] = (), *, sample_id: str = "") -> Graded:
        """The type's final answer, and the grader's verdict on the whole reply."""
        return Graded(self._base.extract(text, options), self._call(text, gold, options, sample_id))

    def hint(self, gold: str, options: Sequence[str] = ()) -> str:
        """The type's hint."""
        return self._base.hint(gold, options)

    def written(self, answer: str) -> str:
        """As the type writes it."""
        return self._base.written(answer)

    def wrong(self, gold: str, options: Sequence[str] = ()) -> str:
        """The type's wrong answer."""
        return self._base.wrong(gold, options)

    def _call(self, reply: str, gold: str, options: Sequence[str], sample_id: str) -> bool:
        where = f"grader {self._name!r} on sample {sample_id or '?'}"
        try:
            verdict = self._check(reply, gold, tuple(options))
        except Exception as exc:
            # The user's code, not ours: one line naming it and the sample, the traceback kept as the cause.
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise GraderError(f"{where} raised {type(exc).__name__}: {first}; fix the grader and rerun") from exc
        if isinstance(verdict, bool):
            return verdict
        if isinstance(verdict, (int, float)):
            return verdict >= self._pass
        raise GraderError(f"{where} returned {type(verdict).__name__}; it should return a bool or a number")
