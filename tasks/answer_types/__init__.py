"""Answer types: how a task's gold answers are read, a reply's final answer found, and the two compared.

Every consumer (the scheduler grading teacher rationales, the exam and eval grading the
student, the trainer's records, the emulator's scripted teachers, imported mistakes)
asks an `AnswerType` rather than special-casing a task. `answer_type(section)` builds
one from a `[[datasets]] answer` table; the paper's four tasks are instances too
(`tasks.answers.BUILTIN`: number, number, boolean, choice with 4 options).

Types: `number` (GSM8K/SVAMP: thousands separators, units, $ and %, fractions, a
tolerance), `boolean` (StrategyQA: true/false, yes/no and your synonyms), `choice`
(LogiQA generalised: a letter among any number of options, or the option's text),
`exact` (a normalised string match), `math` (LaTeX answers, `\\boxed{}`, compared
symbolically with math-verify). `grader = "module:function"` grades with your code
instead (tasks/answer_types/custom.py).

>>> t = answer_type(AnswerSection(type="choice"))
>>> t.grade("The answer is (C).", "C", ("red", "green", "blue", "black", "white")).correct
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.config import AnswerKind, AnswerSection
from tasks.answer_types.base import Graded, GraderError
from tasks.answer_types.boolean import BooleanAnswer
from tasks.answer_types.choice import ChoiceAnswer
from tasks.answer_types.custom import CustomGraded
from tasks.answer_types.exact import ExactAnswer
from tasks.answer_types.latex import MathAnswer
from tasks.answer_types.number import NumberAnswer


class AnswerType(Protocol):
    """What every consumer needs from a task's answers. Canonical answers are plain strings.

    `options` are the question's options (choice questions; empty elsewhere). `sample_id`
    only names the sample in a custom grader's error.
    """

    kind: AnswerKind

    def gold(self, raw: object, options: Sequence[str] = ()) -> str:
        """The canonical gold answer from a data record's field (text, number or bool).

        Raises ValueError with a short reason when `raw` holds no answer of this type.
        """
        ...

    def extract(self, text: str, options: Sequence[str] = ()) -> str | None:
        """The final answer of a reply or rationale, canonical where the type has a canonical form; None if none."""
        ...

    def correct(self, predicted: str | None, gold: str, options: Sequence[str] = (), *, sample_id: str = "") -> bool:
        """Whether an extracted answer matches the gold one; None (no answer) never does."""
        ...

    def grade(self, text: str, gold: str, options: Sequence[str] = (), *, sample_id: str = "") -> Graded:
        """A whole reply graded: its extracted answer and verdict (a custom grader sees the whole reply)."""
        ...

    def hint(self, gold: str, options: Sequence[str] = ()) -> str:
        """The gold answer as teachers are shown it: "72", "true", "(B) <option text>"."""
        ...

    def written(self, answer: str) -> str:
        """`answer` as a reply states it after "The answer is": "72", "(B)", "\\boxed{\\frac{1}{2}}"."""
        ...

    def wrong(self, gold: str, options: Sequence[str] = ()) -> str:
        """A canonical answer that is not `gold` (the emulator's teachers get some questions wrong)."""
        ...


def answer_type(section: AnswerSection) -> AnswerType:
    """The answer type a `[[datasets]] answer` table describes, its unset options at their defaults.

    A `grader` wraps the type: the type still reads gold answers and the final answer
    shown in records; the grader decides correctness.

    Raises ValueError when the grader cannot be imported (the config load has already
    said so, naming the key, for a config read from a file).
    """
    base: AnswerType
    if section.type == "number":
        base = NumberAnswer.from_section(section)
    elif section.type == "boolean":
        base = BooleanAnswer.from_section(section)
    elif section.type == "choice":
        base = ChoiceAnswer.from_section(section)
    elif section.type == "exact":
        base = ExactAnswer.from_section(section)
    else:
        base = MathAnswer()
    if section.grader is None:
        return base
    return CustomGraded.from_section(base, section)


__all__ = [
    "AnswerType",
    "BooleanAnswer",
    "ChoiceAnswer",
    "CustomGraded",
    "ExactAnswer",
    "Graded",
    "GraderError",
    "MathAnswer",
    "NumberAnswer",
    "answer_type",
]
