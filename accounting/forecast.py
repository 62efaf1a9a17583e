"""The `--dry-run` forecast: what a run would send, cost, and how long its rate limits make it take.

Nothing is sent. Per dataset x teacher x stage it counts the FAIR calls (every
teacher writes a rationale and a feedback per mistake and reviews the other
teachers' rationales: N, N and N*(T-1) calls), estimates their input tokens from
the real prompts with the estimator the lanes charge (`engine.tokens`), and their
output tokens from each stage's expected length: measured means from the run's
store when it has answers already, else per-stage defaults. A review prompt holds
the rationale under review, so its input adds the target teacher's expected
rationale length.

The wall time per teacher is the largest of what its limits allow: calls / RPM,
tokens / TPM (the lane reconciles its TPM charge with reported usage, so the
long-run rate is set by the tokens really used) and calls x latency / max_in_flight.
Teachers run in parallel and the datasets share them, so the run takes as long as
its slowest teacher. Skip options and the spending cap can only make it smaller:
the forecast is the full method's upper bound.

Each row says where its figures come from: `pilot` (a sample of this run's own
mistakes sent through the whole graph, `accounting.pilot`: the other estimates are
then not used), a store (the mean output lengths this run's store, or another
run's, measured for the same teacher model, task and stage: `accounting.calibration`),
or `defaults`. Latencies come from the same place, else from the emulator's
settings or a generic guess.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import msgspec
from rich.console import Console

from accounting.batch_forecast import ModeComparison, compare_modes, mode_table
from accounting.calibration import History, read_history
from accounting.pilot import Pilot, Total, extrapolate
from accounting.pricing import cost_usd, mode_prices
from core.calls import ChatRequest, Message
from core.capabilities import reasoning_tokens_estimate, teacher_request
from core.config import Config, Stage, TeacherSection
from core.records import Mistake, Question, mistake_from
from core.tables import Table, fmt_duration, fmt_num, fmt_usd, to_rich
from engine.tokens import estimate_request_tokens
from prompts.sets import prompt_set

log = logging.getLogger(__name__)

STAGES: tuple[Stage, ...] = ("rationale", "feedback", "review")
# Expected output tokens per call when no store has measured them: a step-by-step
# rationale or feedback of a few paragraphs, a review of a sentence or two plus
# the score (the paper's Table 5 puts rationale+feedback at 61..131 tokens per
# teacher and sample, review 83..153: these defaults err on the high side).
DEFAULT_OUTPUT_TOKENS: dict[str, float] = {"rationale": 200.0, "feedback": 200.0, "review": 60.0}
# When no latency is known: time to first token plus decoding at ~60 tokens/s.
_BASE_LATENCY_S = 0.5
_DECODE_TOKENS_PER_S = 60.0
# Stand-in for the student's answer when only questions are known (no exam yet).
_ASSUMED_STUDENT_ANSWER_TOKENS = 150

MessagesFn = Callable[..., Sequence[Message]]
EstimateFn = Callable[[ChatRequest], int]


class Expected(msgspec.Struct, frozen=True):
    """Output tokens expected per call (thinking included), the thinking among them, and where the figure came from."""

    tokens: float
    thinking: float
    source: str


class ForecastRow(msgspec.Struct, kw_only=True):
    """One dataset x teacher x stage; `usd_low`..`usd_high` is the 90% interval when a pilot measured it."""

    dataset: str
    teacher: str
    stage: str
    calls: int
    input_tokens: int
    output_tokens: int
    usd: float | None
    source: str = "defaults"
    usd_low: float | None = None
    usd_high: float | None = None
    # Expected thinking tokens, inside `output_tokens` (billed as output).
    reasoning_tokens: int = 0


class DatasetForecast(msgspec.Struct, kw_only=True):
    """One dataset: `mistakes` counted (or assumed from questions x mistake_rate when `assumed`)."""

    task: str
    mistakes: int
    assumed: bool
    rows: list[ForecastRow]
    calls: int
    input_tokens: int
    output_tokens: int
    usd: float | None
    usd_low: float | None = None
    usd_high: float | None = None
    pilot_samples: int = 0
    pilot_usd: float | None = None


class TeacherWall(msgspec.Struct, kw_only=True):
    """A teacher's load over all datasets and the time each of its limits implies (None: no limit set)."""

    teacher: str
    calls: int
    tokens: int
    latency_s: float
    rpm_s: float | None
    tpm_s: float | None
    in_flight_s: float
    wall_s: float
    bound: str
    latency_source: str = "defaults"


class Forecast(msgspec.Struct, kw_only=True):
    datasets: list[DatasetForecast]
    teachers: list[TeacherWall]
    calls: int
    usd: float | None
    wall_s: float
    output_tokens_source: str
    max_usd: float | None = None
    usd_low: float | None = None
    usd_high: float | None = None
    pilot_usd: float | None = None
    # Per dataset and teacher: USD and wall time in sync and in batch mode (accounting/batch_forecast.py).
    modes: ModeComparison | None = None


def _prompt_tokens(
    items: Sequence[Mistake | Question], teacher: TeacherSection, messages: MessagesFn, estimate: EstimateFn
) -> dict[str, int]:
    """Summed estimated input tokens per stage over `items` (review with an empty rationale).

    Every teacher gets the same prompts, so one teacher's requests stand for all.
    """
    sums: dict[str, int] = dict.fromkeys(STAGES, 0)
    for item in items:
        mistake = item if isinstance(item, Mistake) else mistake_from(item)
        for stage in STAGES:
            msgs = tuple(messages(stage, mistake, rationale="" if stage == "review" else None))
            sums[stage] += estimate(teacher_request(teacher, msgs))
        if isinstance(item, Question):
            sums["feedback"] += _ASSUMED_STUDENT_ANSWER_TOKENS
    return sums


def _latency_s(cfg: Config, teacher: TeacherSection, output_tokens: float) -> tuple[float, str]:
    if teacher.base_url == "emulator" and cfg.emulator is not None:
        return (cfg.emulator.latency_ms + cfg.emulator.ms_per_output_token * output_tokens) / 1000.0, "emulator"
    return _BASE_LATENCY_S + output_tokens / _DECODE_TOKENS_PER_S, "defaults"


def _add_usd(total: float | None, usd: float | None) -> float | None:
    return None if total is None or usd is None else total + usd


def forecast(
    cfg: Config,
    work: Mapping[str, Sequence[Mistake | Question]],
    *,
    mistake_rate: float = 1.0,
    mistakes: Mapping[str, Total] | None = None,
    output_tokens: Mapping[str, float] | None = None,
    store: sqlite3.Connection | None = None,
    history: Sequence[History] = (),
    pilots: Mapping[str, Pilot] | None = None,
    latency_s: float | None = None,
    messages: MessagesFn | None = None,
    estimate: EstimateFn | None = None,
) -> Forecast:
    """Forecast calls, tokens, USD and wall time of the teacher stages for `cfg`.

    `work` maps each dataset's task to its mistakes, or to its questions when the
    exam has not run (then `mistake_rate` of them are assumed wrong; 1.0 is the
    upper bound), unless `mistakes` gives a dataset's expected count (a pilot's
    exam: its interval widens the pilot's). A dataset in `pilots` is
    extrapolated from its pilot (with 90% intervals). Otherwise
    expected output tokens per call come from `output_tokens` (per stage), else
    the first of `history` (then `store`, this run's own) that measured the same
    teacher model, task and stage, else the defaults. A measured length (thinking
    included) is capped at the teacher's output limit (`max_tokens` plus any thinking
    budget); a default or given length is the visible answer, capped at `max_tokens`,
    with the expected thinking on top within that limit (an infinite one: the whole limit).
    `latency_s` overrides the seconds per call. `messages`
    and `estimate` default to the ones the run uses (its prompt set's teacher messages,
    `engine.tokens.estimate_request_tokens`).
    """
    messages = messages or prompt_set(cfg.run.prompts).teacher_messages
    estimate = estimate or estimate_request_tokens
    pilots = pilots or {}
    teachers = cfg.teachers
    sources = list(history)
    if store is not None and output_tokens is None:
        sources.append(read_history(store, "store", {t.name: t.model for t in teachers}))

    def expected_out(task: str, teacher: TeacherSection, stage: str) -> Expected:
        value, source = (output_tokens or {}).get(stage), "given"
        for h in sources if value is None else ():
            value, source = h.output_tokens(teacher.model, task, stage), h.source
            if value is not None:
                break
        if value is None:
            value, source = DEFAULT_OUTPUT_TOKENS[stage], "defaults"
        limit = float(teacher_request(teacher, ()).output_limit)
        if source not in ("defaults", "given"):
            # A measured length holds any thinking, which the output limit covers on top of max_tokens.
            return Expected(min(float(value), limit), 0.0, source)
        # Defaults and given lengths are the visible answer; the thinking comes on top, within the limit.
        # An unbounded length is the worst case, every answer its whole limit (thinking budget included).
        visible = min(float(value), float(teacher.max_tokens))
        total = limit if math.isinf(value) else min(visible + reasoning_tokens_estimate(teacher), limit)
        return Expected(total, total - visible, source)

    sections: list[DatasetForecast] = []
    # Per teacher: calls, tokens and output tokens still to send, for the wall time.
    load: dict[str, list[float]] = {t.name: [0, 0, 0.0] for t in teachers}
    # Per dataset x teacher x stage: (dataset, teacher, calls, input, output tokens) still to send.
    todo_rows: list[tuple[str, str, float, float, float]] = []
    for ds in cfg.datasets:
        items = list(work.get(ds.task, ()))
        assumed = any(isinstance(i, Question) for i in items)
        n = round(len(items) * mistake_rate) if assumed else len(items)
        count = (mistakes or {}).get(ds.task)
        if count is not None:
            n, assumed = round(count.value), True
        pilot = pilots.get(ds.task)
        if pilot is not None:
            section = _pilot_section(ds.task, n, assumed, pilot, teachers, count)
            todo = 1.0 - section.pilot_samples / section.mistakes if section.mistakes else 0.0
        else:
            section = _estimated_section(ds.task, n, items, assumed, teachers, expected_out, messages, estimate)
            todo = 1.0
        for r in section.rows:
            acc = load[r.teacher]
            acc[0] += r.calls * todo
            acc[1] += (r.input_tokens + r.output_tokens) * todo
            acc[2] += r.output_tokens * todo
            todo_rows.append((r.dataset, r.teacher, r.calls * todo, r.input_tokens * todo, r.output_tokens * todo))
        sections.append(section)

    def measured_latency(t: TeacherSection) -> tuple[float, str] | None:
        if latency_s is not None:
            return latency_s, "given"
        for p in pilots.values():
            value = p.latency_s(t.name)
            if value is not None:
                return value, "pilot"
        for h in sources:
            value = h.latency_s(t.model)
            if value is not None:
                return value, h.source
        return None

    walls = [_teacher_wall(cfg, t, load[t.name], measured_latency(t)) for t in teachers]
    modes = compare_modes(
        cfg,
        todo_rows,
        lambda t, dataset_load: _teacher_wall(cfg, t, dataset_load, measured_latency(t)).wall_s,
        {w.teacher: w.wall_s for w in walls},
    )
    usd: float | None = 0.0
    for s_ in sections:
        usd = _add_usd(usd, s_.usd)
    low, high = _combined_interval(sections, usd)
    pilot_usd: float | None = None
    if pilots:
        pilot_usd = 0.0
        for s_ in sections:
            pilot_usd = _add_usd(pilot_usd, s_.pilot_usd)
    row_sources = dict.fromkeys(r.source for s_ in sections for r in s_.rows)
    return Forecast(
        datasets=sections,
        teachers=walls,
        calls=sum(s_.calls for s_ in sections),
        usd=usd,
        # Batch teachers take their waves; with none this is the slowest teacher's sync time.
        wall_s=modes.wall_s
        if any(t.mode == "batch" for t in teachers)
        else max((w.wall_s for w in walls), default=0.0),
        output_tokens_source=", ".join(row_sources) or "defaults",
        max_usd=cfg.review.max_usd,
        usd_low=low,
        usd_high=high,
        pilot_usd=pilot_usd,
        modes=modes,
    )


def _estimated_section(
    task: str,
    n: int,
    items: list[Mistake | Question],
    assumed: bool,
    teachers: Sequence[TeacherSection],
    expected_out: Callable[[str, TeacherSection, str], Expected],
    messages: MessagesFn,
    estimate: EstimateFn,
) -> DatasetForecast:
    """A dataset's rows from prompt estimates and expected output lengths (no pilot)."""
    scale = n / len(items) if items else 0.0
    prompt = _prompt_tokens(items, teachers[0], messages, estimate) if teachers else {}
    rows: list[ForecastRow] = []
    for teacher in teachers:
        # At the prices of the teacher's mode: a batch teacher's calls cost batch rates.
        prices = mode_prices(teacher, teacher.mode)
        # Reviews by this teacher score every other teacher's rationale.
        # Only a rationale's visible text goes into the review prompt, never its thinking.
        others_rationale = sum(
            out.tokens - out.thinking
            for u in teachers
            if u is not teacher
            for out in [expected_out(task, u, "rationale")]
        )
        for stage in STAGES:
            per_item = len(teachers) - 1 if stage == "review" else 1
            calls = n * per_item
            tin = prompt[stage] * scale * per_item + (n * others_rationale if stage == "review" else 0)
            out = expected_out(task, teacher, stage)
            source, thinking, tout = out.source, calls * out.thinking, calls * out.tokens
            rows.append(
                ForecastRow(
                    dataset=task,
                    teacher=teacher.name,
                    stage=stage,
                    calls=calls,
                    input_tokens=round(tin),
                    output_tokens=round(tout),
                    usd=cost_usd(prices, round(tin), round(tout)),
                    source=source,
                    reasoning_tokens=round(thinking),
                )
            )
    return _dataset_section(task, n, assumed, rows)


def _widened(total: Total, count: Total | None) -> Total:
    """`total` (a per-mistake mean x the mistakes) with the count's own uncertainty added, relatively, in quadrature."""
    if count is None or total.low is None or total.high is None:
        return total
    if count.low is None or count.high is None or not count.value or not total.value:
        return Total(value=total.value, low=None, high=None)
    below = math.hypot((total.value - total.low) / total.value, (count.value - count.low) / count.value)
    above = math.hypot((total.high - total.value) / total.value, (count.high - count.value) / count.value)
    return Total(value=total.value, low=max(0.0, total.value * (1 - below)), high=total.value * (1 + above))


def _pilot_section(
    task: str, n: int, assumed: bool, pilot: Pilot, teachers: Sequence[TeacherSection], count: Total | None = None
) -> DatasetForecast:
    """A dataset's rows extrapolated from its pilot's measured calls (`count`: the mistakes, when estimated)."""
    n = max(n, len(pilot.sample_ids))
    source = f"pilot ({len(pilot.sample_ids)} of {n})"
    rows: list[ForecastRow] = []
    for teacher in teachers:
        for stage in STAGES:
            figures = {
                f: extrapolate(pilot.per_sample(teacher.name, stage, f) or [], n)
                for f in ("calls", "input_tokens", "output_tokens")
            }
            usd_values = pilot.per_sample(teacher.name, stage, "usd")
            usd = _widened(extrapolate(usd_values, n), count) if usd_values is not None else None
            rows.append(
                ForecastRow(
                    dataset=task,
                    teacher=teacher.name,
                    stage=stage,
                    calls=round(figures["calls"].value),
                    input_tokens=round(figures["input_tokens"].value),
                    output_tokens=round(figures["output_tokens"].value),
                    usd=usd.value if usd else None,
                    source=source,
                    usd_low=usd.low if usd else None,
                    usd_high=usd.high if usd else None,
                )
            )
    section = _dataset_section(task, n, assumed, rows)
    # The dataset's interval comes from each sample's total, not from summing the rows' intervals:
    # a long-winded sample is long for every teacher and stage at once.
    totals = pilot.per_sample(None, None, "usd")
    total = _widened(extrapolate(totals, n), count) if totals is not None else None
    section.usd_low, section.usd_high = (total.low, total.high) if total else (None, None)
    section.pilot_samples = len(pilot.sample_ids)
    section.pilot_usd = pilot.spent_usd()
    return section


def _combined_interval(sections: Sequence[DatasetForecast], usd: float | None) -> tuple[float | None, float | None]:
    """The run's 90% interval: datasets' pilots are independent, so their half-widths add in quadrature."""
    if usd is None or not sections or any(s.usd_low is None or s.usd_high is None for s in sections):
        return None, None
    below = math.sqrt(sum((s.usd - s.usd_low) ** 2 for s in sections))  # type: ignore[operator]
    above = math.sqrt(sum((s.usd_high - s.usd) ** 2 for s in sections))  # type: ignore[operator]
    return max(0.0, usd - below), usd + above


def _dataset_section(task: str, n: int, assumed: bool, rows: list[ForecastRow]) -> DatasetForecast:
    usd: float | None = 0.0
    for r in rows:
        usd = None if usd is None or r.usd is None else usd + r.usd
    return DatasetForecast(
        task=task,
        mistakes=n,
        assumed=assumed,
        rows=rows,
        calls=sum(r.calls for r in rows),
        input_tokens=sum(r.input_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        usd=usd,
    )


def _teacher_wall(
    cfg: Config, teacher: TeacherSection, load: Sequence[float], measured: tuple[float, str] | None
) -> TeacherWall:
    """The wall time of `load` (calls, tokens, output tokens) under the teacher's limits."""
    calls, tokens, out_tokens = load
    latency, latency_source = measured or _latency_s(cfg, teacher, out_tokens / calls if calls else 0.0)
    bounds = {
        "rpm": calls / (teacher.rpm / 60.0) if teacher.rpm else None,
        "tpm": tokens / (teacher.tpm / 60.0) if teacher.tpm else None,
        "in_flight": calls * latency / teacher.max_in_flight,
    }
    bound, wall = max(((k, v) for k, v in bounds.items() if v is not None), key=lambda kv: kv[1])
    return TeacherWall(
        teacher=teacher.name,
        calls=round(calls),
        tokens=round(tokens),
        latency_s=latency,
        rpm_s=bounds["rpm"],
        tpm_s=bounds["tpm"],
        in_flight_s=bounds["in_flight"],
        wall_s=wall,
        bound=bound,
        latency_source=latency_source,
    )


def _interval(low: float | None, high: float | None) -> str:
    return "-" if low is None or high is None else f"{fmt_usd(low)} - {fmt_usd(high)}"


def forecast_tables(fc: Forecast) -> list[Table]:
    """The forecast as tables: the pilot's own cost first, then per dataset x teacher x stage, then wall time."""
    tables: list[Table] = []
    if fc.pilot_usd is not None or any(ds.pilot_samples for ds in fc.datasets):
        tables.append(
            Table(
                title="Pilot: sent and paid for (the real run reuses every answer)",
                headers=["dataset", "pilot mistakes", "of", "USD"],
                text_columns=1,
                rows=[
                    [ds.task, fmt_num(ds.pilot_samples), fmt_num(ds.mistakes), fmt_usd(ds.pilot_usd)]
                    for ds in fc.datasets
                ],
                note=f"The pilot spent {fmt_usd(fc.pilot_usd)}"
                + (f", counted against review.max_usd ({fmt_usd(fc.max_usd)})." if fc.max_usd is not None else "."),
            )
        )
    batch = {r.teacher for r in fc.modes.rows if r.mode == "batch"} if fc.modes is not None else set()
    rows = []
    for ds in fc.datasets:
        for r in ds.rows:
            rows.append(
                [
                    r.dataset,
                    r.teacher,
                    r.stage,
                    r.source,
                    fmt_num(r.calls),
                    fmt_num(r.input_tokens),
                    fmt_num(r.output_tokens),
                    fmt_num(r.reasoning_tokens),
                    fmt_usd(r.usd),
                    _interval(r.usd_low, r.usd_high),
                ]
            )
        label = f"{ds.task} total ({ds.mistakes:,} {'assumed ' if ds.assumed else ''}mistakes)"
        rows.append(
            [
                label,
                "",
                "",
                "",
                fmt_num(ds.calls),
                fmt_num(ds.input_tokens),
                fmt_num(ds.output_tokens),
                fmt_num(sum(r.reasoning_tokens for r in ds.rows)),
                fmt_usd(ds.usd),
                _interval(ds.usd_low, ds.usd_high),
            ]
        )
    note = f"Output tokens per call from {fc.output_tokens_source}. Total {fmt_num(fc.calls)} calls, {fmt_usd(fc.usd)}"
    note += f" (90% interval {_interval(fc.usd_low, fc.usd_high)})." if fc.usd_low is not None else "."
    if fc.pilot_usd is not None and fc.usd is not None:
        note += f" Still to buy after the pilot: {fmt_usd(fc.usd - fc.pilot_usd)}."
    if fc.max_usd is not None and fc.usd is not None and fc.usd > fc.max_usd:
        note += f" The spending cap ({fmt_usd(fc.max_usd)}) stops the run at about {fc.max_usd / fc.usd:.0%} of this."
    tables.append(
        Table(
            title="Dry run: the full run's calls",
            headers=[
                "dataset",
                "teacher",
                "stage",
                "source",
                "calls",
                "input tok",
                "output tok",
                "of which reasoning",
                "USD",
                "USD 90%",
            ],
            rows=rows,
            note=note,
            text_columns=4,
        )
    )
    tables.append(
        Table(
            title="Dry run: wall time the limits imply for the calls still to send (teachers run in parallel)",
            headers=["teacher", "calls", "tokens", "by RPM", "by TPM", "by in-flight", "bound", "wall"],
            rows=[
                [
                    w.teacher,
                    fmt_num(w.calls),
                    fmt_num(w.tokens),
                    fmt_duration(w.rpm_s),
                    fmt_duration(w.tpm_s),
                    fmt_duration(w.in_flight_s),
                    w.bound,
                    fmt_duration(w.wall_s),
                ]
                for w in fc.teachers
            ],
            note=f"Teacher stages take about {fmt_duration(fc.wall_s)} (the slowest teacher); in-flight bound assumes "
            + ", ".join(f"{w.teacher} {w.latency_s:.2f}s ({w.latency_source})" for w in fc.teachers)
            + " per call."
            + (
                f" Batch teachers ({', '.join(t.teacher for t in fc.teachers if t.teacher in batch)}) send no sync "
                "calls: see the sync-or-batch table."
                if batch
                else ""
            ),
        )
    )
    if fc.modes is not None:
        tables.append(mode_table(fc.modes))
    return tables


def print_forecast(fc: Forecast, console: Console, out_dir: Path | None = None) -> None:
    """Print the forecast as rich tables, and write `forecast.json` into `out_dir` when it exists."""
    for table in forecast_tables(fc):
        console.print(to_rich(table))
    if out_dir is not None and Path(out_dir).is_dir():
        path = Path(out_dir) / "forecast.json"
        path.write_bytes(msgspec.json.format(msgspec.json.encode(fc), indent=2) + b"\n")
        log.info("forecast written to %s", path)
