"""A defined task's gold answer, read from its record's gold field into the canonical form graders compare."""

from __future__ import annotations

from collections.abc import Sequence

from tasks.answers import LETTERS, normalize_answer
from tasks.definitions import TaskDef


def read_gold(task: TaskDef, raw: object, options: Sequence[str] = ()) -> str:
    """The canonical gold answer of `raw` for `task` ("72", "true", "B", ...).

    A choice task's gold may be the letter, the option's 0-based index, or the option's text.
    Raises ValueError with a short reason when `raw` holds no answer of the task's type.
    """
    if isinstance(raw, bool):
        raw = "true" if raw else "false"
    if not isinstance(raw, (str, int, float)):
        raise ValueError(f"expected text or a number, got {type(raw).__name__}")
    text = str(raw).strip()
    if task.answer.type == "choice" and text in options:
        return LETTERS[list(options).index(text)]
    gold = normalize_answer(task.name, text)
    if gold is None:
        raise ValueError(f"cannot read a {task.answer.type} answer from {text[:80]!r}")
    return gold
