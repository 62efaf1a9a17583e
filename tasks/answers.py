"""The paper's four tasks' answers, by task name: thin over their answer types (tasks/answer_types/).

GSM8K and SVAMP are `number`, StrategyQA `boolean`, LogiQA `choice` with four options.
Every answer has one canonical form per type: a number written by `numbers.canonical`
("72", "0.75"), "true"/"false", or an option letter "A".."D".
"""

from __future__ import annotations

from collections.abc import Sequence

from core.config import TaskName
from tasks.answer_types import AnswerType, BooleanAnswer, ChoiceAnswer, NumberAnswer
from tasks.family import Family, family

LETTERS = ("A", "B", "C", "D")

BUILTIN: dict[Family, AnswerType] = {
    "math": NumberAnswer(),
    "strategyqa": BooleanAnswer(),
    "logiqa": ChoiceAnswer(n_options=len(LETTERS)),
}


def builtin_answer_type(task: TaskName) -> AnswerType:
    """The answer type of one of the paper's tasks; ValueError for a task we do not know."""
    return BUILTIN[family(task)]


def normalize_answer(task: TaskName, value: str) -> str | None:
    """`value` (a gold answer or an extracted one) in canonical form, or None if unreadable.

    Math: one number ("145", "51.0", "$1,200" -> "145", "51", "1200"). StrategyQA:
    "true"/"false" (also yes/no, any case, trailing period). LogiQA: "A".."D" from a
    letter ("b", "(B)", "Option B") or a 0-based option index ("1" -> "B").
    """
    kind = builtin_answer_type(task)  # an unknown task is an error, not an unreadable answer
    try:
        return kind.gold(value)
    except ValueError:
        return None


def extract_answer(task: TaskName, text: str, *, options: Sequence[str] = ()) -> str | None:
    """The final answer in a model's free-text output, canonical (see `normalize_answer`), or None.

    Math: the last `\\boxed{}`, else the last "#### N", else the last "answer is N" /
    "Answer: N" (the result after "=" when the sentence is a calculation), else the
    last number in the text. StrategyQA: "the answer is yes/true/...", else a leading
    true/false/yes/no, else the last standalone true/false. LogiQA: after the last
    answer marker, the text of one of `options` or else a letter; else "option C is
    correct"; else a leading letter ("B. ..."); else the last "(B)"; else the one
    option whose text the output quotes.

    >>> extract_answer("gsm8k", "She pays 3 * $4 = $12.\\nThe answer is $1,200.")
    '1200'
    """
    return builtin_answer_type(task).extract(text, options)


def is_correct(task: TaskName, predicted: str | None, gold: str) -> bool:
    """Whether `predicted` matches `gold` (both canonical or readable by `normalize_answer`).

    Math compares numerically within 1e-4; the others compare canonical forms.
    None (no answer found) is never correct.
    """
    return builtin_answer_type(task).correct(predicted, gold)
