"""The dry run's sync-or-batch comparison: per dataset and teacher, USD and wall time in each mode.

USD in each mode is the forecast's tokens at the teacher's sync and batch prices
(`accounting.pricing.mode_prices`). Sync wall time is what the teacher's rate limits
imply for that dataset's calls (as the forecast's wall table). Batch time is counted
in waves, each `batch_expected_hours` long: the longest chain of batch calls that wait
for one another. A batch rationale is one wave; its batch reviews, which need it, the
next (an all-batch committee: rationales and feedback, then reviews, two waves). A
batch teacher's reviews of sync rationales go out while its first wave runs, so a lone
batch teacher beside sync ones takes one wave. With `skip_decided` a rationale's reviews
go one at a time, so each batch reviewer in its review order adds a wave (the worst
case: no review decides early). A wave's batches run side by side (split by the
provider's limits), so more mistakes make bigger waves, not more of them; sync calls
between the waves take seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from functools import reduce

import msgspec

from accounting.ledger import add_usd
from accounting.pricing import cost_usd, mode_prices
from core.config import Config, TeacherSection
from core.tables import Table, fmt_duration, fmt_num, fmt_usd
from store.calls import CallMode

# Wall seconds a teacher's limits imply for (calls, tokens, output tokens) of one dataset.
SyncWallFn = Callable[[TeacherSection, Sequence[float]], float]


class ModeRow(msgspec.Struct, kw_only=True):
    """One dataset x teacher in both modes; `mode` is the one the config sets. USD None: price unknown."""

    dataset: str
    teacher: str
    mode: CallMode
    calls: int
    usd_sync: float | None
    usd_batch: float | None
    wall_sync_s: float
    wall_batch_s: float
    waves: int
    # Where the batch prices come from (`Prices.source`: the table's batch rates, or half the sync ones).
    batch_prices: str = "unknown"


class ModeComparison(msgspec.Struct, kw_only=True):
    """The rows, and the run in three ways: as configured, every teacher sync, every teacher batch."""

    rows: list[ModeRow]
    usd: float | None
    usd_sync: float | None
    usd_batch: float | None
    wall_s: float
    wall_sync_s: float
    wall_batch_s: float
    # Each teacher's `batch_expected_hours`.
    batch_hours: dict[str, float] = {}


def batch_waves(cfg: Config, batch: Collection[str]) -> int:
    """Submissions one after another that the FAIR graph needs when the teachers named in `batch` send batches.

    0 without batch teachers; 1 when nothing is reviewed; otherwise the longest chain of
    batch calls: a batch rationale, then its batch reviews (all at once, or with
    `skip_decided` one reviewer after another).
    """
    names = [t.name for t in cfg.teachers]
    if not any(n in batch for n in names):
        return 0
    if not cfg.review.peer_review or cfg.review.single_teacher or len(names) < 2:
        return 1
    longest = 1
    for author in names:
        wave = int(author in batch)
        reviewers = [n in batch for n in names if n != author]
        if cfg.review.skip_decided:
            wave += sum(reviewers)
        else:
            wave += any(reviewers)
        longest = max(longest, wave)
    return longest


def compare_modes(
    cfg: Config,
    rows: Sequence[tuple[str, str, float, float, float]],
    sync_wall: SyncWallFn,
    teacher_walls: Mapping[str, float],
) -> ModeComparison:
    """Both modes for `rows` of (dataset, teacher, calls, input tokens, output tokens) still to send.

    `sync_wall` times one dataset's load on a teacher's limits; `teacher_walls` is each
    teacher's sync time for all its datasets together (they share its lanes).
    """
    teachers = {t.name: t for t in cfg.teachers}
    loads: dict[tuple[str, str], list[float]] = {}
    for dataset, teacher, calls, tin, tout in rows:
        acc = loads.setdefault((dataset, teacher), [0, 0, 0])
        acc[0] += calls
        acc[1] += tin
        acc[2] += tout
    configured = {t.name for t in cfg.teachers if t.mode == "batch"}
    out: list[ModeRow] = []
    for (dataset, name), (calls, tin, tout) in loads.items():
        t = teachers[name]
        batch_prices = mode_prices(t, "batch")
        # This teacher's waves were it in batch mode, beside the others as configured.
        waves = batch_waves(cfg, configured | {name})
        out.append(
            ModeRow(
                dataset=dataset,
                teacher=name,
                mode=t.mode,
                calls=round(calls),
                usd_sync=cost_usd(mode_prices(t, "sync"), round(tin), round(tout)),
                usd_batch=cost_usd(batch_prices, round(tin), round(tout)),
                wall_sync_s=sync_wall(t, (calls, tin + tout, tout)),
                wall_batch_s=waves * t.batch_expected_hours * 3600.0 if calls else 0.0,
                waves=waves,
                batch_prices=batch_prices.source if batch_prices is not None else "unknown",
            )
        )
    return _comparison(cfg, out, configured, teacher_walls)


def _comparison(
    cfg: Config, rows: list[ModeRow], configured: set[str], sync_walls: Mapping[str, float]
) -> ModeComparison:
    hours = {t.name: t.batch_expected_hours for t in cfg.teachers}
    all_batch = batch_waves(cfg, set(hours))
    configured_waves = batch_waves(cfg, configured)
    busy = {r.teacher for r in rows if r.calls}
    batch_hours = max((hours[n] for n in configured & busy), default=0.0)
    wall = max([configured_waves * batch_hours * 3600.0] + [sync_walls.get(n, 0.0) for n in busy - configured])
    return ModeComparison(
        rows=rows,
        usd=_total(r.usd_batch if r.mode == "batch" else r.usd_sync for r in rows),
        usd_sync=_total(r.usd_sync for r in rows),
        usd_batch=_total(r.usd_batch for r in rows),
        wall_s=wall,
        wall_sync_s=max((sync_walls.get(n, 0.0) for n in busy), default=0.0),
        wall_batch_s=all_batch * max((hours[n] for n in busy), default=0.0) * 3600.0,
        batch_hours=hours,
    )


def _total(values: Iterable[float | None]) -> float | None:
    return reduce(add_usd, values, 0.0)


def mode_table(cmp: ModeComparison) -> Table:
    """The comparison as a table: per dataset and teacher, USD and wall time in sync and in batch mode."""
    rows = [
        [
            r.dataset,
            r.teacher,
            r.mode,
            fmt_num(r.calls),
            fmt_usd(r.usd_sync),
            fmt_usd(r.usd_batch),
            fmt_duration(r.wall_sync_s),
            f"{fmt_duration(r.wall_batch_s)} ({r.waves} x {cmp.batch_hours[r.teacher]:g}h)",
            r.batch_prices,
        ]
        for r in cmp.rows
    ]
    rows.append(
        [
            "run",
            "every teacher",
            "-",
            fmt_num(sum(r.calls for r in cmp.rows)),
            fmt_usd(cmp.usd_sync),
            fmt_usd(cmp.usd_batch),
            fmt_duration(cmp.wall_sync_s),
            fmt_duration(cmp.wall_batch_s),
            "",
        ]
    )
    return Table(
        title="Dry run: sync or batch, per dataset and teacher",
        headers=[
            "dataset",
            "teacher",
            "mode",
            "calls",
            "USD sync",
            "USD batch",
            "wall sync",
            "wall batch",
            "batch prices",
        ],
        rows=rows,
        text_columns=3,
        note=f"As configured: {fmt_usd(cmp.usd)}, about {fmt_duration(cmp.wall_s)}. USD from the forecast's tokens at "
        "list prices (batch: the table's batch rates, else half). Wall sync: what the rate limits imply; wall batch: "
        "waves one after another (rationales and feedback, then reviews; with skip_decided each batch reviewer of a "
        "rationale is a wave) times batch_expected_hours; the run row puts every teacher in sync, then in batch mode.",
    )
