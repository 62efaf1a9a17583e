"""`number`: one number per answer (GSM8K, SVAMP), compared numerically within a tolerance."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from core.config import AnswerKind, AnswerSection
from tasks.answer_types.base import Rule
from tasks.answer_types.marks import marked
from tasks.numbers import canonical, find_numbers, parse_number

# The paper's tasks: |predicted - gold| <= 1e-4, no relative part.
DEFAULT_TOLERANCE = 1e-4


class NumberAnswer(Rule):
    """Numbers written by `numbers.canonical` ("72", "0.75", "-3").

    `tolerance` and `relative_tolerance`: a prediction is right when
    |predicted - gold| <= tolerance + relative_tolerance * |gold|, computed exactly.
    """

    __slots__ = ("_absolute", "_relative")
    kind: AnswerKind = "number"

    def __init__(self, tolerance: float = DEFAULT_TOLERANCE, relative_tolerance: float = 0.0):
        # Fraction(str(x)): the decimal the user wrote, not the binary float nearest it.
        self._absolute = Fraction(str(tolerance))
        self._relative = Fraction(str(relative_tolerance))

    @classmethod
    def from_section(cls, section: AnswerSection) -> NumberAnswer:
        """The type with `section`'s tolerances, defaults where unset."""
        return cls(
            DEFAULT_TOLERANCE if section.tolerance is None else section.tolerance,
            section.relative_tolerance or 0.0,
        )

    def normalize(self, value: str) -> str | None:
        """The one number `value` holds, canonical ("$1,200" -> "1200", "51.0" -> "51"), or None."""
        number = parse_number(value.strip())
        return None if number is None else canonical(number)

    def gold(self, raw: object, options: Sequence[str] = ()) -> str:
        """The gold number; raises ValueError unless `raw` holds exactly one number."""
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise ValueError(f"expected a number, got {type(raw).__name__}")
        gold = self.normalize(str(raw))
        if gold is None:
            raise ValueError(f"expected one number, got {str(raw)[:40]!r}")
        return gold

    def extract(self, text: str, options: Sequence[str] = ()) -> str | None:
        """The last `\\boxed{}`, else the last "#### N", else the last "answer is N" / "Answer: N" (the result
        after "=" when the sentence is a calculation), else the last number in the text."""
        for spans in marked(text):
            for span in reversed(spans):
                number = _number_in(span)
                if number is not None:
                    return number
        numbers = find_numbers(text)
        return canonical(numbers[-1]) if numbers else None

    def correct(self, predicted: str | None, gold: str, options: Sequence[str] = (), *, sample_id: str = "") -> bool:
        """Whether both read as one number each and lie within the tolerance."""
        if predicted is None:
            return False
        p, g = parse_number(predicted), parse_number(gold)
        return p is not None and g is not None and abs(p - g) <= self._absolute + self._relative * abs(g)

    def wrong(self, gold: str, options: Sequence[str] = ()) -> str:
        """`gold` + 1, its fraction dropped first."""
        number = parse_number(gold)
        return "0" if number is None else str(int(number) + 1)


def _number_in(span: str) -> str | None:
    # "48 + 24 = 72": the answer is the result, not the first operand.
    numbers = find_numbers(span.rsplit("=", 1)[-1])
    return canonical(numbers[0]) if numbers else None
