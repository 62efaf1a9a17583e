"""Load a benchmark split from a data folder, from Hugging Face, or from the demo questions.

Splits are the paper's (LfC's Hugging Face splits), rebuilt from the raw files as
../shared/data/README.md describes: GSM8K's own train/test files; SVAMP and
StrategyQA shuffled with `random.Random(42)` and cut 70/30; LogiQA's Test.txt and,
when the user has it, Train.txt. A question's id is its index in that split, the
`id` the FAIR authors' mistake files carry.
"""

from __future__ import annotations

import logging
import random
from importlib import resources
from pathlib import Path
from typing import Literal

import msgspec

from core.config import TaskName
from core.errors import DataError
from core.records import Question
from tasks import fields, hf
from tasks.answers import LETTERS
from tasks.definitions import TaskDef, task_def
from tasks.files import Records, file_records, json_array, jsonl, jsonl_rows, read_text, split_file
from tasks.rows import BadRecord, Row, to_question

log = logging.getLogger(__name__)

Split = Literal["train", "test"]
OnBadLine = Literal["stop", "skip"]

# ChilleD's SVAMP (700/300) and StrategyQA (1603/687) splits are a seeded 70/30 cut.
_SHUFFLE_SEED = 42
_TRAIN_FRACTION = 0.7
LOGIQA_TRAIN_URL = "https://raw.githubusercontent.com/lgw863/LogiQA-dataset/master/Train.txt"


class SkippedRecord(msgspec.Struct, frozen=True):
    """A malformed record passed over under on_bad_line="skip": where it is and why."""

    where: str
    reason: str


class LoadReport(msgspec.Struct, frozen=True):
    """What `load_split_report` read: the questions, and the records it skipped."""

    questions: list[Question]
    skipped: list[SkippedRecord]


def load_split(
    task: TaskName,
    source: str,
    split: Split,
    *,
    limit: int | None = None,
    on_bad_line: OnBadLine = "stop",
) -> list[Question]:
    """The questions of `task`'s `split`, in the paper's order, at most `limit` of them.

    `source` is a folder laid out like ../shared/data/<task>, "hf:<dataset>[:config]"
    (needs the `datasets` package and a network), or "demo" (the SVAMP questions that
    ship in tasks/demo_data). Raises DataError naming the file and line (or record) of
    a malformed record, unless `on_bad_line="skip"`, which logs and skips it (see
    `load_split_report` for the list of skipped records).

    >>> load_split("svamp", "demo", "test", limit=2)[0].id
    '0'
    """
    return load_split_report(task, source, split, limit=limit, on_bad_line=on_bad_line).questions


def load_split_report(
    task: TaskName,
    source: str,
    split: Split,
    *,
    limit: int | None = None,
    on_bad_line: OnBadLine = "stop",
) -> LoadReport:
    """Like `load_split`, and also says which records were skipped as malformed.

    A defined task's first record missing a mapped field stops the load whatever `on_bad_line`
    says: the field mapping is wrong, not the record.
    """
    try:
        definition = task_def(task)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; expected 'train' or 'test'")
    if limit is not None and limit < 0:
        raise DataError(f"limit must be >= 0, got {limit}")
    if not definition.builtin:
        records = _defined_records(definition, source, split)
    elif source == "demo":
        records = _demo_records(task, split)
    elif source.startswith("hf:"):
        records = hf.records(source, split)
    else:
        records = _folder_records(task, Path(source), split)

    questions: list[Question] = []
    skipped: list[SkippedRecord] = []
    for index, where, row in records:
        if limit is not None and len(questions) >= limit:
            break
        try:
            if isinstance(row, BadRecord):
                raise row
            if definition.builtin:
                questions.append(to_question(task, index, row))
            else:
                questions.append(fields.to_question(definition, index, row))
        except BadRecord as exc:
            if isinstance(exc, fields.MissingField) and not questions and not skipped:
                raise DataError(f"{where}: {exc}; fix the [[datasets]] entry's field mapping") from None
            if on_bad_line == "stop":
                raise DataError(f'{where}: {exc} (set on_bad_line = "skip" to skip bad records)') from None
            log.warning("%s: skipped: %s", where, exc)
            skipped.append(SkippedRecord(where=where, reason=str(exc)))
    if skipped:
        log.warning("%s %s split from %s: skipped %d malformed records", task, split, source, len(skipped))
    return LoadReport(questions=questions, skipped=skipped)


def check_split_files(task: TaskName, source: str) -> None:
    """For a defined task with local data: raise DataError unless both splits' files exist and each split's
    first record has every mapped field (the test split is otherwise first read at eval, after the teachers
    were paid). Other bad records are left to the split's `on_bad_line`."""
    definition = task_def(task)
    if definition.builtin or source.startswith("hf:"):
        return
    for split, named in (("train", definition.train), ("test", definition.test)):
        path = split_file(Path(source), split, named)
        if not path.is_file():
            raise DataError(f"{path}: no such file for the {split} split; fix `source` or `{split}`")
        for _, where, row in file_records(path):
            try:
                fields.check_mapping(definition, row)
            except fields.MissingField as exc:
                raise DataError(f"{where}: {exc}; fix the [[datasets]] entry's field mapping") from None
            break


def _defined_records(task: TaskDef, source: str, split: Split) -> Records:
    named = task.train if split == "train" else task.test
    if source.startswith("hf:"):
        return hf.records(source, named or split)
    return file_records(split_file(Path(source), split, named))


def _demo_records(task: TaskName, split: Split) -> Records:
    if task != "svamp":
        raise DataError(f"source 'demo' ships SVAMP questions only, not {task}; point `source` at a {task} data folder")
    name = f"tasks/demo_data/svamp_{split}.json"
    rows = json_array(name, (resources.files("tasks") / "demo_data" / f"svamp_{split}.json").read_text("utf-8"))
    for position, row in enumerate(rows):
        # Each demo record carries its index in the full split, so ids match the full data's.
        index = row.get("index", position) if isinstance(row, dict) else position
        yield index, f"{name} record {position}", row  # type: ignore[misc]


def _folder_records(task: TaskName, folder: Path, split: Split) -> Records:
    if not folder.is_dir():
        raise DataError(
            f"data source {folder} is not a folder; give a folder laid out like ../shared/data/{task}, "
            f"'hf:<dataset>' or 'demo'"
        )
    if task == "gsm8k":
        return jsonl(_need(folder / f"{split}.jsonl", task))
    if task == "svamp":
        return _recipe(_need(folder / "SVAMP.json", task), split)
    if task == "strategyqa":
        full = folder / "strategyqa_train.json"
        kard = folder / "kard_split" / f"{split}.json"
        # The KARD files hold the same split in the same order, without the facts.
        if not full.is_file() and kard.is_file():
            return _kard(kard)
        return _recipe(_need(full, task), split)
    return _logiqa(folder, split)


def _need(path: Path, task: TaskName) -> Path:
    if not path.is_file():
        raise DataError(f"{path}: missing; the {task} data folder should hold it (see ../shared/data/README.md)")
    return path


def _recipe(path: Path, split: Split) -> Records:
    rows = json_array(path, read_text(path))
    order = list(range(len(rows)))
    random.Random(_SHUFFLE_SEED).shuffle(order)
    cut = round(len(rows) * _TRAIN_FRACTION)
    positions = order[:cut] if split == "train" else order[cut:]
    for index, position in enumerate(positions):
        yield index, f"{path} record {position}", rows[position]  # type: ignore[misc]


def _kard(path: Path) -> Records:
    for index, (line_no, row) in enumerate(jsonl_rows(path)):
        # KARD is multiple choice over ("yes", "no"): label 0 is true.
        if isinstance(row, dict) and row.get("label") in (0, 1) and "sent1" in row:
            row = {"question": row["sent1"], "answer": row["label"] == 0}
        yield index, f"{path}:{line_no}", row


def _logiqa(folder: Path, split: Split) -> Records:
    path = folder / ("Train.txt" if split == "train" else "Test.txt")
    if not path.is_file() and split == "train":
        raise DataError(
            f"{path}: LogiQA's train split (Train.txt, 7376 questions) is missing from this folder; "
            f'download it from {LOGIQA_TRAIN_URL} into {folder}, or use source = "hf:lucasmccabe/logiqa"'
        )
    return _logiqa_blocks(_need(path, "logiqa"))


def _logiqa_blocks(path: Path) -> Records:
    """LogiQA's text format: 8 lines per question (blank, answer letter a-d, context,
    question, options "A." .. "D."). A bad block is reported at its first line; reading
    resumes at the next blank line."""
    # Not splitlines(), as for JSON Lines.
    lines = [line.rstrip("\r") for line in read_text(path).split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    i = index = 0
    while i < len(lines):
        block = lines[i : i + 8]
        where = f"{path}:{i + 1}"
        problem = _logiqa_problem(block)
        if problem is None:
            row: Row | BadRecord = {
                "context": block[2],
                "query": block[3],
                "options": [_strip_option_letter(line, letter) for line, letter in zip(block[4:], "ABCD", strict=True)],
                "correct_option": "abcd".index(block[1].strip().lower()),
            }
            i += 8
        else:
            row = BadRecord(problem)
            i += 1
            while i < len(lines) and lines[i].strip():
                i += 1
        yield index, where, row
        index += 1


def _logiqa_problem(block: list[str]) -> str | None:
    if len(block) < 8:
        return f"a question needs 8 lines, only {len(block)} left"
    if block[0].strip():
        return "expected a blank line before each question"
    if block[1].strip().lower() not in ("a", "b", "c", "d"):
        return f"expected the answer letter a-d on line 2 of the question, got {block[1][:20]!r}"
    if not all(line.strip() for line in block[2:]):
        return "context, question and four options must each be one non-blank line"
    return None


def _strip_option_letter(line: str, letter: str) -> str:
    # Most options read "A.text"; a few "A text", "A?text", "a.text", or carry another
    # option's letter ("C.text" in position B: the list order is what counts). Lines
    # where the letter sits elsewhere ("In the B.NEC ...") are kept whole.
    line = line.strip()
    first, second = line[:1], line[1:2]
    if first.upper() in LETTERS and (second in (".", "?", ":", ")", "\u3001") or (first == letter and second == " ")):
        return line[2:].strip()
    return line
