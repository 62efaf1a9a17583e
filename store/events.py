"""The run events the store keeps beside the calls: one Struct per kind, a tagged union.

The tag is also the `kind` column of the events table, so reports query one kind
without decoding the others. Bodies written before these Structs existed carry no
`kind` field; decoding a body as its own kind's Struct needs none, so they still read.

    await store.add_event(StageStart(stage="teach"))
    for at, event in read_events(conn, BudgetReached): ...
"""

from __future__ import annotations

import sqlite3
from functools import cache
from typing import TypeVar

import msgspec


class _StageMark(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """A stage starting or ending; `dataset` None: the stage over all datasets at once."""

    stage: str
    dataset: str | None = None


class StageStart(_StageMark, frozen=True, tag="stage_start"):
    pass


class StageEnd(_StageMark, frozen=True, tag="stage_end"):
    pass


class TeacherModels(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="teachers"):
    """Which model each teacher name was, so a later forecast can learn from this store."""

    models: dict[str, str]


class DatasetStop(msgspec.Struct, frozen=True, kw_only=True):
    """What the spending cap left undone in one dataset."""

    not_started: int = 0
    incomplete: int = 0


class BudgetReached(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="budget_reached"):
    """The spending cap stopped new calls. `datasets` None: a store from before it named the datasets stopped."""

    max_usd: float | None = None
    spent_usd: float | None = None
    datasets: dict[str, DatasetStop] | None = None


Event = StageStart | StageEnd | TeacherModels | BudgetReached
E = TypeVar("E", StageStart, StageEnd, TeacherModels, BudgetReached)

_encoder = msgspec.json.Encoder()


@cache
def _decoder(kind: type[E]) -> msgspec.json.Decoder[E]:
    return msgspec.json.Decoder(kind)


def event_kind(event: Event | type[Event]) -> str:
    """The events table's `kind` of an event (its tag)."""
    tag = event.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def encode_event(event: Event) -> bytes:
    """An event's body as stored."""
    return _encoder.encode(event)


def decode_event(kind: type[E], body: bytes) -> E:
    """A stored body of `kind`, including bodies written before the Structs (no `kind` field).

    Raises `msgspec.DecodeError` for a body that is neither.
    """
    try:
        return _decoder(kind).decode(body)
    except msgspec.ValidationError:
        if kind is not TeacherModels:
            raise
        # The teachers event used to be the bare name -> model mapping.
        return TeacherModels(models=msgspec.json.decode(body, type=dict[str, str]))  # type: ignore[return-value]


def read_events(conn: sqlite3.Connection, kind: type[E]) -> list[tuple[float, E]]:
    """Events of one kind as (unix time, event), oldest first."""
    cur = conn.execute("SELECT at, body FROM events WHERE kind = ? ORDER BY seq", (event_kind(kind),))
    return [(at, decode_event(kind, body)) for at, body in cur]
