"""A defined task's record -> one `Question`, through the field mapping of its `[[datasets]]` entry.

Paths are dotted: `a.b` is field `b` of field `a`; a number picks a list item (`choices.0`); a
name applied to a list maps over its items (`question.choices.text`: every choice's text).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping

from core.config import FieldsSection
from core.records import Question
from tasks.definitions import TaskDef, answer_type_of
from tasks.rows import BadRecord, Row


class MissingField(BadRecord):
    """A mapped field the record does not have: in a split's first record, a mapping mistake."""

    def __init__(self, key: str, path: str, row: Row):
        names = ", ".join(sorted(map(str, row))[:12]) if isinstance(row, Mapping) else ""
        super().__init__(f"fields.{key} = {path!r}: no such field (the record has {names or 'no fields'})")


def lookup(row: object, path: str) -> object:
    """The value at dotted `path` in `row`; KeyError when a step is missing."""
    value = row
    for step in path.split("."):
        if isinstance(value, Mapping):
            if step not in value:
                raise KeyError(step)
            value = value[step]
        elif isinstance(value, (list, tuple)) and step.lstrip("-").isdigit():
            try:
                value = value[int(step)]
            except IndexError:
                raise KeyError(step) from None
        elif isinstance(value, (list, tuple)):
            value = [lookup(item, step) for item in value]
        else:
            raise KeyError(step)
    return value


def _get(row: Row, key: str, path: str) -> object:
    try:
        return lookup(row, path)
    except KeyError:
        raise MissingField(key, path, row) from None


def _text(row: Row, key: str, path: str) -> str:
    value = _get(row, key, path)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise BadRecord(f"field {path!r} (fields.{key}) should be text, got {type(value).__name__}")
    return value.strip()


def _options(row: Row, fields: FieldsSection) -> tuple[str, ...]:
    if fields.options is None:
        return ()
    if isinstance(fields.options, str):
        value = _get(row, "options", fields.options)
        # A CSV cell can hold a list only as text: a JSON array.
        if isinstance(value, str) and value.lstrip().startswith("["):
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        if not isinstance(value, (list, tuple)) or not value:
            raise BadRecord(f"field {fields.options!r} (fields.options) should be a list of texts, got {value!r}")
        options = [str(o) if isinstance(o, (int, float)) else o for o in value]
    else:
        options = [_text(row, "options", path) for path in fields.options]
    if not all(isinstance(o, str) and o.strip() for o in options):
        raise BadRecord(f"fields.options: every option should be non-empty text, got {options!r}")
    return tuple(str(o).strip() for o in options)


def check_mapping(task: TaskDef, row: object) -> None:
    """Raise MissingField for the first mapped field `row` lacks; a record of another shape is left to `to_question`.

    For a split's first record, where a missing field means a wrong mapping rather than a bad record.
    """
    if not isinstance(row, Mapping):
        return
    fields = task.fields or FieldsSection()
    options = (fields.options,) if isinstance(fields.options, str) else fields.options or ()
    mapped = [("question", fields.question), ("gold", fields.gold), ("context", fields.context), ("id", fields.id)]
    for key, path in [*mapped, *(("options", path) for path in options)]:
        if path is not None:
            _get(row, key, path)


def to_question(task: TaskDef, index: int, row: Row) -> Question:
    """The Question for `row`, the `index`-th record of its split (the id unless `fields.id` names one).

    Raises MissingField for a mapped field the record lacks, BadRecord for one it cannot read
    (a gold answer the task's answer type cannot parse included).
    """
    if not isinstance(row, Mapping):
        raise BadRecord(f"expected a record of named fields, got {type(row).__name__}")
    fields = task.fields or FieldsSection()
    options = _options(row, fields)
    raw_gold = _get(row, "gold", fields.gold)
    try:
        gold = answer_type_of(task.name).gold(raw_gold, options)
    except ValueError as exc:
        raise BadRecord(f"field {fields.gold!r} (fields.gold): {exc}") from None
    return Question(
        id=_text(row, "id", fields.id) if fields.id else str(index),
        task=task.name,
        question=_text(row, "question", fields.question),
        gold=gold,
        gold_text=str(raw_gold).strip(),
        context=_text(row, "context", fields.context) if fields.context else "",
        options=options,
    )
