"""Import the FAIR authors' mistake files, so users of the original code can bring their exam results.

The release format (zhuochunli/Learn-from-Committee `infer_student_wrong.py`) is a
JSON list of objects with `id, question, gold_answer, student_wrong_pred,
student_wrong_final_answer`, plus `context, options` for LogiQA. `gold_answer` is
GSM8K's full worked answer ending in `#### N`, StrategyQA's "true."/"false." + tab +
facts, SVAMP's answer string, or LogiQA's 0-based `correct_option`.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.config import BUILTIN_TASKS, TaskName
from core.errors import DataError
from core.records import Mistake
from tasks.answers import LETTERS, normalize_answer

# What the authors' extractor writes when it found no final answer.
_NO_ANSWER = "absolute_wrong_final_ans"
_REQUIRED = ("id", "question", "gold_answer", "student_wrong_pred", "student_wrong_final_answer")


def import_mistakes(task: TaskName, path: str | Path) -> list[Mistake]:
    """The mistakes in the authors' file at `path`, with their `id`s kept (as strings).

    `gold_answer` becomes the normalised gold ("72", "true", "B"); the authors' text
    is kept in `gold_text`. A missing final answer becomes None. Raises DataError
    naming the file, the record index and the missing or unreadable field.
    """
    if task not in BUILTIN_TASKS:
        raise DataError(f"unknown task {task!r}; the authors' mistake files are of {', '.join(BUILTIN_TASKS)}")
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"{path}: cannot read mistakes file: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a JSON mistakes file: {exc}") from None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of mistakes, got {type(records).__name__}")
    mistakes = [_mistake(task, path, i, record) for i, record in enumerate(records)]
    ids = [m.id for m in mistakes]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{path}: id {dup!r} appears more than once; ids must be unique")
    return mistakes


def _mistake(task: TaskName, path: Path, index: int, record: object) -> Mistake:
    where = f"{path} record {index}"
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    required = _REQUIRED + (("context", "options") if task == "logiqa" else ())
    for key in required:
        if key not in record:
            raise DataError(f"{where}: missing field {key!r} (a {task} mistake needs {', '.join(required)})")
    for key in ("question", "student_wrong_pred") + (("context",) if task == "logiqa" else ()):
        if not isinstance(record[key], str):
            raise DataError(f"{where}: field {key!r} should be text, got {type(record[key]).__name__}")
    if not isinstance(record["id"], (int, str)) or isinstance(record["id"], bool):
        raise DataError(f"{where}: field 'id' should be a number or text, got {record['id']!r}")

    raw_gold = record["gold_answer"]
    gold = _gold(task, raw_gold)
    if gold is None:
        raise DataError(f"{where}: field 'gold_answer': cannot read a {task} answer from {str(raw_gold)[:80]!r}")
    options: tuple[str, ...] = ()
    if task == "logiqa":
        opts = record["options"]
        if not isinstance(opts, list) or len(opts) != len(LETTERS) or not all(isinstance(o, str) for o in opts):
            raise DataError(f"{where}: field 'options' should be a list of 4 texts")
        options = tuple(o.strip() for o in opts)

    final = record["student_wrong_final_answer"]
    final_text = "" if final is None else str(final).strip()
    return Mistake(
        id=str(record["id"]),
        task=task,
        question=record["question"].strip(),
        gold=gold,
        gold_text=str(raw_gold),
        student_answer=record["student_wrong_pred"],
        # Keep the authors' answer as written when it is not in our canonical form.
        student_final_answer=None
        if final_text.lower() in ("", _NO_ANSWER)
        else normalize_answer(task, final_text) or final_text,
        context=record["context"].strip() if task == "logiqa" else "",
        options=options,
    )


def _gold(task: TaskName, raw: object) -> str | None:
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        return None
    text = str(raw)
    if task == "gsm8k":
        text = text.rsplit("####", 1)[1] if "####" in text else ""
    elif task == "strategyqa":
        # "true.\t<facts>": the answer is before the tab.
        text = text.split("\t", 1)[0]
    return normalize_answer(task, text)
