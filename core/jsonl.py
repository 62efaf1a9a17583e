"""Typed JSONL records, one a line, with the file and line named when one does not decode."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import msgspec

from core.errors import DataError

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Decoder(Protocol[T_co]):
    """A `msgspec.json.Decoder`, or anything that decodes like one (`core.records.RecordDecoder`)."""

    def decode(self, buf: bytes, /) -> T_co: ...


def decode_lines(path: Path, lines: Iterable[bytes], decoder: Decoder[T], what: str) -> Iterator[T]:
    """Each non-blank line of `path` (its `lines`, read by the caller) decoded by `decoder`.

    Raises `DataError` naming the file and line for the first line that does not decode:

        pairs = list(decode_lines(path, path.read_bytes().splitlines(), _pair_decoder, "preference pair"))
        # DataError: out/preferences.jsonl:3: not a preference pair: Object missing required field `chosen`
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield decoder.decode(line)
        except msgspec.DecodeError as exc:
            raise DataError(f"{path}:{number}: not a {what}: {exc}") from None
