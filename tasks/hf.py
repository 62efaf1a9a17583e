"""Benchmark splits from the Hugging Face hub, for machines with a network and `datasets`.

`datasets` is imported only when a source asks for it: it is heavy and optional, and
this project's offline machines do not have it. Rows keep Hugging Face's column names;
tasks/rows.py maps them to Questions.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

from core.errors import DataError

# Datasets that need a config name when the source gives none (`hf:openai/gsm8k`).
DEFAULT_CONFIGS = {"openai/gsm8k": "main"}


def parse_source(source: str) -> tuple[str, str | None]:
    """("openai/gsm8k", "main") from "hf:openai/gsm8k:main"; the config defaults per dataset.

    Raises DataError for a source with no dataset name.
    """
    name, _, config = source.removeprefix("hf:").partition(":")
    if not name:
        raise DataError(
            f"data source {source!r}: write it as 'hf:<dataset name>[:config]', e.g. 'hf:openai/gsm8k:main'"
        )
    return name, config or DEFAULT_CONFIGS.get(name)


def records(source: str, split: str) -> Iterator[tuple[int, str, Any]]:
    """(index, where, row) for every row of `split` of the dataset `source` names.

    Raises DataError when `datasets` is missing or the dataset cannot be loaded
    (no network, unknown name or split).
    """
    name, config = parse_source(source)
    try:
        datasets = importlib.import_module("datasets")
    except ImportError:
        raise DataError(
            f"data source {source!r} needs the Hugging Face datasets package: pip install datasets"
        ) from None
    try:
        rows = datasets.load_dataset(name, config, split=split)
    # `datasets` raises many unrelated types (connection, file-not-found, its own); all mean "cannot load".
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"data source {source!r}: cannot load split {split!r}: {reason}") from None
    for index, row in enumerate(rows):
        yield index, f"{source} {split} record {index}", row
