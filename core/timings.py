"""Where a run's wall time goes: one line per phase in `out_dir/timings.jsonl`, read by the run report.

Stages and the trainer append a `PhaseTime` as each phase ends (model load,
generation, DeepSpeed setup, steps, ...), so a killed run keeps the phases it
finished. Lines carry the id of the `run.py` invocation that wrote them (set once
in the environment, so trainer processes inherit it): the report shows the latest
invocation's breakdown, and a resumed run's phases stay apart from the first one's.

    with timed(out_dir, "exam", "load model"):
        backend = load_student(ctx)
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

TIMINGS_FILE = "timings.jsonl"
RUN_ID_ENV = "COMMITTEE_RUN_ID"
_encoder = msgspec.json.Encoder()


class PhaseTime(msgspec.Struct, frozen=True, kw_only=True):
    """One finished phase. `phase` "all" is the whole stage; `tokens`: tokens generated or trained in it."""

    run_id: str
    stage: str
    phase: str
    wall_s: float
    tokens: int | None = None
    note: str = ""


class PhaseMeter(msgspec.Struct, kw_only=True):
    """What a `timed` block may fill in before it ends."""

    tokens: int | None = None
    note: str = ""


def _now_id() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def start_run() -> str:
    """Give this invocation a fresh id (its start time, UTC), in the environment so trainer processes inherit it."""
    os.environ[RUN_ID_ENV] = _now_id()
    return os.environ[RUN_ID_ENV]


def run_id() -> str:
    """This invocation's id: the one `start_run` set (or a parent process passed on), else a new one."""
    return os.environ.setdefault(RUN_ID_ENV, _now_id())


def record_phase(
    out_dir: Path, stage: str, phase: str, wall_s: float, tokens: int | None = None, note: str = ""
) -> None:
    """Append one finished phase to `out_dir/timings.jsonl`."""
    row = PhaseTime(run_id=run_id(), stage=stage, phase=phase, wall_s=wall_s, tokens=tokens, note=note)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(out_dir) / TIMINGS_FILE, "ab") as f:
        f.write(_encoder.encode(row) + b"\n")


@contextmanager
def timed(out_dir: Path | None, stage: str, phase: str = "all") -> Iterator[PhaseMeter]:
    """Time the block and record it as `stage`/`phase` when it ends normally (not when it raises).

    `out_dir` None times nothing (a trainer rank other than 0, a caller without a run directory).
    """
    meter = PhaseMeter()
    start = time.perf_counter()
    yield meter
    if out_dir is not None:
        record_phase(out_dir, stage, phase, time.perf_counter() - start, meter.tokens, meter.note)


def read_phases(out_dir: Path) -> list[PhaseTime]:
    """The phases of the latest invocation that recorded any; a torn last line (a killed run) is skipped."""
    path = Path(out_dir) / TIMINGS_FILE
    if not path.is_file():
        return []
    decoder = msgspec.json.Decoder(PhaseTime)
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            rows.append(decoder.decode(line))
        except msgspec.DecodeError:
            continue
    latest = max((r.run_id for r in rows), default=None)
    return [r for r in rows if r.run_id == latest]


class Laps:
    """Consecutive phases of one stage: each `lap` records the time since the previous lap (or the start).

    laps = Laps(out_dir, "train")
    setup()
    laps.lap("setup")
    """

    def __init__(self, out_dir: Path | None, stage: str) -> None:
        self.out_dir = out_dir
        self.stage = stage
        self._last = time.perf_counter()

    def lap(self, phase: str, tokens: int | None = None, note: str = "") -> None:
        """Record `phase` as the time since the last lap; `out_dir` None (not rank 0) records nothing."""
        now = time.perf_counter()
        if self.out_dir is not None:
            record_phase(self.out_dir, self.stage, phase, now - self._last, tokens, note)
        self._last = now
