"""`run.py --config CFG --status`: where a run stands, from its store alone; nothing is sent or written.

Per dataset the samples decided and included and the calls still missing; per teacher
(and mode) the calls answered, failed and reused and the USD billed so far; per
provider batch its state, counts, age and provider id. It opens the store read-only
and takes no lock, so it works beside the run that holds the directory (a WAL reader
never blocks the writer), which is the point: a batch run can wait hours on its batches.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from pathlib import Path

import msgspec
from rich.console import Console

from accounting import ledger
from accounting.batch_counts import BatchView, batch_views, batches_table
from core.config import Config
from core.tables import Table, fmt_num, fmt_usd, to_rich
from reports.cost import decided_samples
from reports.run_report import open_teacher_ledger
from stages.lock import LOCK_FILE
from store.calls import CallMode


class DatasetStatus(msgspec.Struct, kw_only=True):
    """One dataset: samples decided (with nothing missing, or with calls still to send) and included."""

    task: str
    decided: int = 0
    included: int = 0
    incomplete: int = 0
    missing_calls: int = 0


class TeacherStatus(msgspec.Struct, kw_only=True):
    """One teacher in one mode: calls answered, failed and reused, and what they cost."""

    teacher: str
    mode: CallMode
    calls: int = 0
    failed: int = 0
    cached: int = 0
    usd: float | None = 0.0
    possibly_usd: float = 0.0


class RunStatus(msgspec.Struct, kw_only=True):
    """The whole picture; `running` names the process holding the run directory, None when none does."""

    out_dir: str
    running: str | None
    datasets: list[DatasetStatus]
    teachers: list[TeacherStatus]
    batches: list[BatchView]
    usd: float | None
    possibly_usd: float


def run_holder(out_dir: Path) -> str | None:
    """The pid and command of the run holding `out_dir`, or None when no run does (a probe that never blocks).

    The probe asks for a shared lock and drops it at once: it fails exactly while a run
    holds the exclusive one (stages/lock.py), and never waits.
    """
    path = out_dir / LOCK_FILE
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 4096, 0).decode(errors="replace").strip() or "pid unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def read_status(cfg: Config, conn: sqlite3.Connection, out_dir: Path, *, now: float | None = None) -> RunStatus:
    """Where the run stands, from a (read-only) connection to its store; datasets in config order."""
    tasks = [d.task for d in cfg.datasets]
    tasks += [t for t in ledger.datasets(conn) if t not in tasks]
    datasets = []
    for task in tasks:
        samples = decided_samples(conn, task)
        datasets.append(
            DatasetStatus(
                task=task,
                decided=len(samples),
                included=sum(s.included for s in samples),
                incomplete=sum(bool(s.missing) for s in samples),
                missing_calls=len(ledger.missing_slots(conn, task)),
            )
        )
    teachers: dict[tuple[str, str], TeacherStatus] = {}
    for row in ledger.stage_ledger(conn):
        t = teachers.setdefault((row.teacher, row.mode), TeacherStatus(teacher=row.teacher, mode=row.mode))
        t.calls += row.calls
        t.failed += row.failed
        t.cached += row.cached
        t.usd = ledger.add_usd(t.usd, row.usd)
        t.possibly_usd += row.possibly_usd
    usd: float | None = 0.0
    for t in teachers.values():
        usd = ledger.add_usd(usd, t.usd)
    return RunStatus(
        out_dir=str(out_dir),
        running=run_holder(out_dir),
        datasets=datasets,
        teachers=sorted(teachers.values(), key=lambda t: (t.teacher, t.mode != "sync")),
        batches=batch_views(conn, now=now),
        usd=usd,
        possibly_usd=sum(t.possibly_usd for t in teachers.values()),
    )


def status_tables(status: RunStatus) -> list[Table]:
    """The status as tables: datasets, teachers, and batches when there are any."""
    tables = [
        Table(
            title="Samples",
            headers=["dataset", "decided", "included", "with calls missing", "calls missing"],
            rows=[
                [d.task, fmt_num(d.decided), fmt_num(d.included), fmt_num(d.incomplete), fmt_num(d.missing_calls)]
                for d in status.datasets
            ],
        ),
        Table(
            title="Teachers",
            headers=["teacher", "mode", "calls", "failed", "reused", "USD", "possibly billed USD"],
            rows=[
                [
                    t.teacher,
                    t.mode,
                    fmt_num(t.calls),
                    fmt_num(t.failed),
                    fmt_num(t.cached),
                    fmt_usd(t.usd),
                    fmt_usd(t.possibly_usd),
                ]
                for t in status.teachers
            ],
            text_columns=2,
            note=f"So far: {fmt_usd(status.usd)} billed, {fmt_usd(status.possibly_usd)} possibly billed.",
        ),
    ]
    if status.batches:
        open_count = sum(not b.closed for b in status.batches)
        tables.append(
            batches_table(
                f"Batches ({open_count} open of {len(status.batches)})",
                status.batches,
                "`open`: results not all committed yet; a rerun polls these instead of submitting again. "
                "Age: since the batch was planned (a closed batch's, until it closed).",
            )
        )
    return tables


def show_status(cfg: Config, console: Console | None = None, *, now: float | None = None) -> RunStatus | None:
    """Print where the run of `cfg` stands and return it; None (and a line saying so) before any teacher call."""
    console = console or Console()
    out_dir = Path(cfg.run.out_dir)
    conn = open_teacher_ledger(out_dir)
    if conn is None:
        console.print(
            f"{out_dir}: no teacher calls recorded yet (no run store, or only the exam's answers)", soft_wrap=True
        )
        return None
    try:
        status = read_status(cfg, conn, out_dir, now=time.time() if now is None else now)
    finally:
        conn.close()
    running = f"a run is in progress ({status.running})" if status.running else "no run is in progress"
    console.print(f"{out_dir}: {running}", soft_wrap=True)
    for table in status_tables(status):
        console.print(to_rich(table))
    return status
