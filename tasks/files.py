"""Records from data files: JSON Lines, a JSON array, CSV and Parquet, each with where it is for messages.

Every reader yields (index in the split, where the record is, raw row); a record that could not
even be parsed comes as the BadRecord saying why, so the caller's on_bad_line policy applies to it.
"""

from __future__ import annotations

import csv
import importlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from core.errors import DataError
from tasks.rows import BadRecord, Row

Records = Iterator[tuple[int, str, Row | BadRecord]]
# The file kinds a defined task's split may be, in the order a folder is searched for `<split>.<suffix>`.
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def read_text(path: Path) -> str:
    """The file's UTF-8 text; DataError naming it when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None


def json_array(path: Path | str, text: str) -> list[object]:
    """The records of a JSON array file; DataError naming the file and line when it is not one."""
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(rows).__name__}")
    return rows


def jsonl_rows(path: Path) -> Iterable[tuple[int, Row | BadRecord]]:
    """(line number, object) for every non-blank line; a line that is not JSON comes as a BadRecord."""
    # Not splitlines(): JSON text may hold a raw U+2028, which it would split on.
    for line_no, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield line_no, json.loads(line)
        except json.JSONDecodeError as exc:
            yield line_no, BadRecord(f"not valid JSON ({exc.msg}, column {exc.colno})")


def jsonl(path: Path) -> Records:
    """The records of a JSON Lines file, each where = `file:line`."""
    for index, (line_no, row) in enumerate(jsonl_rows(path)):
        yield index, f"{path}:{line_no}", row


def _json_file(path: Path) -> Records:
    for index, row in enumerate(json_array(path, read_text(path))):
        yield index, f"{path} record {index}", row  # type: ignore[misc]


def _csv(path: Path) -> Records:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        try:
            for index, row in enumerate(reader):
                # The line a record ends on (a quoted field may span lines); line 1 is the header.
                yield index, f"{path}:{reader.line_num}", row
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None


def _parquet(path: Path) -> Records:
    try:
        parquet = importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        rows = parquet.read_table(path).to_pylist()
    # pyarrow raises its own ArrowInvalid as well as OSError for a file that is not Parquet.
    except Exception as exc:
        raise DataError(f"{path}: cannot read as Parquet: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    for index, row in enumerate(rows):
        yield index, f"{path} row {index}", row


def file_records(path: Path) -> Records:
    """The records of one data file, read by its suffix (.jsonl, .json, .csv, .parquet)."""
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    readers = {".jsonl": jsonl, ".json": _json_file, ".csv": _csv, ".parquet": _parquet}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unknown data file kind; use {', '.join(SUFFIXES)}")
    return reader(path)


def split_file(source: Path, split: str, named: str | None) -> Path:
    """The file of `split` for a defined task whose `source` is a folder or one file.

    `named` is the entry's `train`/`test` (relative to the folder, or to the file's folder); unset,
    a folder must hold exactly one `<split>.<suffix>`, and a file source is the train split itself.
    Raises DataError naming the key to set.
    """
    folder = source if source.is_dir() else source.parent
    if named is not None:
        path = Path(named)
        return path if path.is_absolute() else folder / path
    if not source.exists():
        raise DataError(f"data source {source} does not exist; give a folder, a data file or 'hf:<dataset>'")
    if source.is_file():
        if split == "train":
            return source
        raise DataError(f"data source {source} is one file (the train split); name the {split} split's file "
                        f"with `{split} = \"...\"`")  # fmt: skip
    found = [folder / f"{split}{suffix}" for suffix in SUFFIXES if (folder / f"{split}{suffix}").is_file()]
    if len(found) != 1:
        what = "none" if not found else " and ".join(p.name for p in found)
        raise DataError(
            f"data source {source}: expected one {split} file ({', '.join(split + s for s in SUFFIXES)}), "
            f'found {what}; name it with `{split} = "..."`'
        )
    return found[0]
