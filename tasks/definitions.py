"""Task definitions: where a task's questions come from, how its answers are graded, which templates ask it.

The paper's four tasks are definitions like any other (`BUILTIN`); a `[[datasets]]` entry naming
another task defines it (source, split files, field mapping, answer type, template family). Every
consumer (loaders, graders, prompt sets, the emulator's teachers) asks `task_def(name)`.

Why a registry filled when a run's config is loaded, and not a `Tasks` object passed down: records
(Question, Mistake, DecidedSample, TrainRecord) carry only the task's name, and they are graded and
worded far from the config (the scheduler, the emulator's scripted teachers, the trainer's own
processes, which load the config again). Passing the definitions along would change every signature
on the way for one look-up; `declare` runs wherever a run's config is loaded (`RunContext`, the
trainer), so a name means what that config says, and the built-in names always mean the paper's tasks.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from core.config import BUILTIN_TASKS, AnswerKind, AnswerSection, DatasetSection, FieldsSection, TaskName
from tasks.answer_types import AnswerType, answer_type

# LogiQA's option letters.
LETTERS = ("A", "B", "C", "D")

# A defined task's templates when its entry names none: the built-in family that asks for its kind of answer.
TEMPLATES_BY_ANSWER: dict[AnswerKind, str] = {
    "number": "math",
    "boolean": "strategyqa",
    "choice": "choice",
    "math": "boxed",
    "exact": "exact",
}


class TaskDef(msgspec.Struct, frozen=True, kw_only=True):
    """One task: its answer rule, its template family, and (defined tasks) where its records are.

    `fields` is None for a built-in task, whose own reader (tasks/rows.py, tasks/loaders.py) knows
    its files; `train`/`test` are split files relative to `source`'s folder, or Hugging Face split names.
    """

    name: TaskName
    answer: AnswerSection
    templates: str
    fields: FieldsSection | None = None
    train: str | None = None
    test: str | None = None

    @property
    def builtin(self) -> bool:
        return self.fields is None


BUILTIN: dict[str, TaskDef] = {
    "gsm8k": TaskDef(name="gsm8k", answer=AnswerSection(type="number"), templates="math"),
    "svamp": TaskDef(name="svamp", answer=AnswerSection(type="number"), templates="math"),
    "strategyqa": TaskDef(name="strategyqa", answer=AnswerSection(type="boolean"), templates="strategyqa"),
    "logiqa": TaskDef(name="logiqa", answer=AnswerSection(type="choice", n_options=len(LETTERS)), templates="logiqa"),
}
assert tuple(BUILTIN) == BUILTIN_TASKS

_declared: dict[str, TaskDef] = {}
# Each task's answer type, built once: a custom grader is imported when its task is declared.
_types: dict[str, AnswerType] = {name: answer_type(t.answer) for name, t in BUILTIN.items()}


def definition(d: DatasetSection) -> TaskDef:
    """The task a `[[datasets]]` entry names (built in) or defines."""
    if d.task in BUILTIN:
        return BUILTIN[d.task]
    assert d.answer is not None  # DatasetSection requires it of a task that is not built in
    return TaskDef(
        name=d.task,
        answer=d.answer,
        templates=d.templates or TEMPLATES_BY_ANSWER[d.answer.type],
        fields=d.fields or FieldsSection(),
        train=d.train,
        test=d.test,
    )


def declare(datasets: Iterable[DatasetSection]) -> None:
    """Make the tasks these entries define known by name, replacing those an earlier config defined."""
    defs = [definition(d) for d in datasets]
    types = {t.name: answer_type(t.answer) for t in defs if not t.builtin}
    for name in _declared:
        _types.pop(name, None)
    _declared.clear()
    _declared.update((t.name, t) for t in defs if not t.builtin)
    _types.update(types)


def task_def(name: TaskName) -> TaskDef:
    """The definition of task `name`: built in, or declared by the run's config.

    Raises ValueError for a name that is neither.
    """
    found = BUILTIN.get(name) or _declared.get(name)
    if found is None:
        known = ", ".join([*BUILTIN, *_declared])
        raise ValueError(f"unknown task {name!r}; expected one of {known} (or define it in a [[datasets]] entry)")
    return found


def answer_type_of(name: TaskName) -> AnswerType:
    """The answer type of task `name` (see `task_def`); ValueError for a task we do not know."""
    task_def(name)
    return _types[name]
