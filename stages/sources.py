"""Where each dataset's questions and mistakes come from, read before anything is paid for."""

from __future__ import annotations

from pathlib import Path

from core.config import DatasetSection
from core.errors import ConfigError
from core.jsonl import decode_lines
from core.records import Mistake, Question, RecordDecoder
from tasks import import_mistakes, load_split


def train_questions(d: DatasetSection) -> list[Question]:
    """The exam's questions: the paper's train split, at most `limit`."""
    return load_split(d.task, d.source, "train", limit=d.limit, on_bad_line=d.on_bad_line)


def test_questions(d: DatasetSection) -> list[Question]:
    """The eval's questions: the test split, at most `test_limit`."""
    return load_split(d.task, d.source, "test", limit=d.test_limit, on_bad_line=d.on_bad_line)


def exam_mistakes(out_dir: Path, task: str) -> list[Mistake]:
    """The mistakes an earlier exam of this run wrote to mistakes.jsonl, for `task`."""
    path = out_dir / "mistakes.jsonl"
    if not path.exists():
        raise ConfigError(
            f"no mistakes for {task!r}: {path} does not exist; run `--stage exam` first "
            "or set `mistakes` in its [[datasets]] entry"
        )
    with open(path, "rb") as fh:
        return [m for m in decode_lines(path, fh, RecordDecoder(Mistake), "mistake record") if m.task == task]


def mistakes_for_teach(d: DatasetSection, out_dir: Path) -> list[Mistake]:
    """Imported mistakes when the dataset names a file, else the exam's."""
    if d.mistakes:
        mistakes = import_mistakes(d.task, d.mistakes)
        return mistakes[: d.limit] if d.limit is not None else mistakes
    return exam_mistakes(out_dir, d.task)
