"""Task families: tasks that share an answer type, prompt templates and grading."""

from __future__ import annotations

from typing import Literal, get_args

from core.config import TaskName

Family = Literal["math", "strategyqa", "logiqa"]

TASKS: tuple[TaskName, ...] = get_args(TaskName)
_FAMILY: dict[str, Family] = {"gsm8k": "math", "svamp": "math", "strategyqa": "strategyqa", "logiqa": "logiqa"}


def family(task: TaskName) -> Family:
    """The family of `task`: "math" (gsm8k, svamp), "strategyqa" or "logiqa".

    Raises ValueError for a task we do not know.
    """
    try:
        return _FAMILY[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}") from None
