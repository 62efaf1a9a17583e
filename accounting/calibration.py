"""What a run store already measured, for the forecast: answer lengths and latencies, and a pilot's samples.

Two readings of the `calls` table:

- `read_history`: mean output tokens per (teacher model, task, stage) and mean
  latency per model over completed calls, from this run's store or another
  run's (`--calibrate-from`). Models come from the `teachers` event the teach
  stage records; a store from before that event matches teachers by name.
- `pilot_samples`: per pilot sample, what each teacher's calls of each stage
  cost (calls, tokens, USD, latency), for the pilot's extrapolation.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

import msgspec

from core.errors import ConfigError
from store.events import TeacherModels, read_events

STORE_FILE = "store.sqlite"


class StageMean(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    task: str
    stage: str
    output_tokens: float
    calls: int


class ModelLatency(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    latency_s: float
    calls: int


class History(msgspec.Struct, kw_only=True):
    """Means measured by one run store; `source` names it in the forecast ("store" or the directory)."""

    source: str
    stages: list[StageMean]
    latencies: list[ModelLatency]

    def output_tokens(self, model: str, task: str, stage: str) -> float | None:
        """Mean output tokens per call measured for this model, task and stage, if any."""
        return next((s.output_tokens for s in self.stages if (s.model, s.task, s.stage) == (model, task, stage)), None)

    def latency_s(self, model: str) -> float | None:
        """Mean seconds per completed call of this model, if any."""
        return next((x.latency_s for x in self.latencies if x.model == model), None)


class SampleCalls(msgspec.Struct, kw_only=True):
    """One teacher's paid calls of one stage for one sample (usd None: a price is unknown)."""

    sample_id: str
    teacher: str
    stage: str
    calls: int
    input_tokens: int
    output_tokens: int
    usd: float | None
    latency_s: float


def teacher_models(conn: sqlite3.Connection) -> dict[str, str]:
    """Teacher name -> model, from the last `teachers` event (empty for a store from before it)."""
    seen = read_events(conn, TeacherModels)
    return seen[-1][1].models if seen else {}


def read_history(conn: sqlite3.Connection, source: str, names: dict[str, str] | None = None) -> History:
    """The means of the completed calls in `conn`, keyed by teacher model.

    `names` (teacher name -> model) stands in for a store that never recorded its
    teachers' models: then a teacher of the same name is taken as the same model.
    """
    models = {**(names or {}), **teacher_models(conn)}
    stages: dict[tuple[str, str, str], list[float]] = {}
    for teacher, task, stage, total, n in conn.execute(
        "SELECT teacher, dataset, stage, SUM(output_tokens), COUNT(*) FROM calls WHERE status = 'completed' "
        "GROUP BY teacher, dataset, stage"
    ):
        acc = stages.setdefault((models.get(teacher) or teacher, task, stage), [0.0, 0])
        acc[0] += total
        acc[1] += n
    latencies: dict[str, list[float]] = {}
    for teacher, total, n in conn.execute(
        "SELECT teacher, SUM(latency_s), COUNT(*) FROM calls WHERE status = 'completed' GROUP BY teacher"
    ):
        acc = latencies.setdefault(models.get(teacher) or teacher, [0.0, 0])
        acc[0] += total
        acc[1] += n
    return History(
        source=source,
        stages=[
            StageMean(model=m, task=t, stage=s, output_tokens=v[0] / v[1], calls=int(v[1]))
            for (m, t, s), v in stages.items()
        ],
        latencies=[ModelLatency(model=m, latency_s=v[0] / v[1], calls=int(v[1])) for m, v in latencies.items()],
    )


def open_run_store(run_dir: Path, flag: str = "--calibrate-from") -> sqlite3.Connection:
    """A read-only connection to another run's store; ConfigError (one line) when `run_dir` is not a run."""
    db = Path(run_dir) / STORE_FILE
    fix = "pass the out_dir of an earlier run (the folder holding its store.sqlite)"
    if not db.is_file():
        raise ConfigError(f"{flag} {run_dir}: not a run directory (no {STORE_FILE}); {fix}")
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        (n,) = conn.execute("SELECT COUNT(*) FROM calls WHERE status = 'completed'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{flag} {run_dir}: {STORE_FILE} is not a run store ({exc}); {fix}") from None
    if n == 0:
        conn.close()
        raise ConfigError(f"{flag} {run_dir}: its store has no completed teacher calls to learn from; {fix}")
    return conn


def pilot_samples(conn: sqlite3.Connection, task: str, sample_ids: Iterable[str]) -> list[SampleCalls]:
    """Each pilot sample's completed calls summed per teacher and stage.

    Only completed rows are counted: a `cached` row is a call served from the
    store, which the run did not pay for again.
    """
    ids = list(sample_ids)
    out: list[SampleCalls] = []
    for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for sid, teacher, stage, calls, tin, tout, usd, priced, lat in conn.execute(
            "SELECT sample_id, teacher, stage, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(usd), "
            f"COUNT(usd), SUM(latency_s) FROM calls WHERE status = 'completed' AND dataset = ? "
            f"AND sample_id IN ({marks}) GROUP BY sample_id, teacher, stage",
            (task, *chunk),
        ):
            out.append(
                SampleCalls(
                    sample_id=sid,
                    teacher=teacher,
                    stage=stage,
                    calls=calls,
                    input_tokens=tin,
                    output_tokens=tout,
                    usd=usd if priced == calls else None,
                    latency_s=lat,
                )
            )
    return out
