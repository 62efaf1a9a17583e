"""Task families: tasks that share prompt templates (`teacher_rationale_<family>.txt` ...)."""

from __future__ import annotations

from core.config import TaskName
from tasks.definitions import task_def

# A template family's name: "math", "strategyqa", "logiqa" (the paper's), "choice", "boxed", "exact", or a user's.
Family = str


def family(task: TaskName) -> Family:
    """The template family of `task`: "math" (gsm8k, svamp), "strategyqa", "logiqa", or a defined task's.

    Raises ValueError for a task we do not know.
    """
    return task_def(task).templates
