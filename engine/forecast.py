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
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import msgspec
from rich.console import Console

from adapters.base import ChatRequest, Message
from engine.config import Config, Stage, TeacherSection
from engine.pricing import cost_usd, teacher_prices
from engine.tokens import estimate_request_tokens
from reports.tables import Table, fmt_duration, fmt_num, fmt_usd, to_rich
from tasks.messages import teacher_messages
from tasks.records import Mistake, Question

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


class ForecastRow(msgspec.Struct, kw_only=True):
    dataset: str
    teacher: str
    stage: str
    calls: int
    input_tokens: int
    output_tokens: int
    usd: float | None


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


class Forecast(msgspec.Struct, kw_only=True):
    datasets: list[DatasetForecast]
    teachers: list[TeacherWall]
    calls: int
    usd: float | None
    wall_s: float
    output_tokens_source: str
    max_usd: float | None = None


def measured_output_tokens(conn: sqlite3.Connection) -> dict[tuple[str, str, str], float]:
    """Mean output tokens of completed calls per (dataset, teacher, stage), and per ("", teacher, stage)."""
    means: dict[tuple[str, str, str], float] = {}
    for ds, teacher, stage, mean in conn.execute(
        "SELECT dataset, teacher, stage, AVG(output_tokens) FROM calls WHERE status = 'completed' "
        "GROUP BY dataset, teacher, stage UNION ALL "
        "SELECT '', teacher, stage, AVG(output_tokens) FROM calls WHERE status = 'completed' GROUP BY teacher, stage"
    ):
        means[(ds, teacher, stage)] = float(mean)
    return means


def _as_mistake(item: Mistake | Question) -> Mistake:
    if isinstance(item, Mistake):
        return item
    return Mistake(
        id=item.id, task=item.task, question=item.question, gold_answer=item.gold,
        student_answer="", student_final_answer=None, context=item.context, options=item.options,
    )


def _prompt_tokens(
    items: Sequence[Mistake | Question], teacher: TeacherSection, messages: MessagesFn, estimate: EstimateFn
) -> dict[str, int]:
    """Summed estimated input tokens per stage over `items` (review with an empty rationale).

    Every teacher gets the same prompts, so one teacher's requests stand for all.
    """
    sums = dict.fromkeys(STAGES, 0)
    for item in items:
        mistake = _as_mistake(item)
        for stage in STAGES:
            msgs = tuple(messages(stage, mistake, rationale="" if stage == "review" else None))
            request = ChatRequest(model=teacher.model, messages=msgs, temperature=teacher.temperature,
                                  top_p=teacher.top_p, max_tokens=teacher.max_tokens)
            sums[stage] += estimate(request)
        if isinstance(item, Question):
            sums["feedback"] += _ASSUMED_STUDENT_ANSWER_TOKENS
    return sums


def _latency_s(cfg: Config, teacher: TeacherSection, output_tokens: float, latency_s: float | None) -> float:
    if latency_s is not None:
        return latency_s
    if teacher.base_url == "emulator" and cfg.emulator is not None:
        return (cfg.emulator.latency_ms + cfg.emulator.ms_per_output_token * output_tokens) / 1000.0
    return _BASE_LATENCY_S + output_tokens / _DECODE_TOKENS_PER_S


def forecast(
    cfg: Config,
    work: Mapping[str, Sequence[Mistake | Question]],
    *,
    mistake_rate: float = 1.0,
    output_tokens: Mapping[str, float] | None = None,
    store: sqlite3.Connection | None = None,
    latency_s: float | None = None,
    messages: MessagesFn | None = None,
    estimate: EstimateFn | None = None,
) -> Forecast:
    """Forecast calls, tokens, USD and wall time of the teacher stages for `cfg`.

    `work` maps each dataset's task to its mistakes, or to its questions when the
    exam has not run (then `mistake_rate` of them are assumed wrong; 1.0 is the
    upper bound). Expected output tokens per call come from `output_tokens`
    (per stage), else from the completed calls in `store`, else the defaults;
    each is capped at the teacher's `max_tokens`. `latency_s` overrides the
    assumed seconds per call. `messages` and `estimate` default to the ones the
    run uses (`tasks.teacher_messages`, `engine.tokens.estimate_request_tokens`).
    """
    messages = messages or teacher_messages
    estimate = estimate or estimate_request_tokens
    measured = measured_output_tokens(store) if store is not None and output_tokens is None else {}
    source = "given" if output_tokens is not None else ("store" if measured else "defaults")
    teachers = cfg.teachers
    n_teachers = len(teachers)

    def expected_out(task: str, teacher: TeacherSection, stage: str) -> float:
        value = (output_tokens or {}).get(stage)
        if value is None:
            value = measured.get((task, teacher.name, stage), measured.get(("", teacher.name, stage)))
        if value is None:
            value = DEFAULT_OUTPUT_TOKENS[stage]
        return min(float(value), float(teacher.max_tokens))

    sections: list[DatasetForecast] = []
    load: dict[str, list[float]] = {t.name: [0, 0, 0.0] for t in teachers}  # calls, tokens, output tokens
    for ds in cfg.datasets:
        items = list(work.get(ds.task, ()))
        assumed = any(isinstance(i, Question) for i in items)
        n = round(len(items) * mistake_rate) if assumed else len(items)
        scale = n / len(items) if items else 0.0
        prompt = _prompt_tokens(items, teachers[0], messages, estimate) if teachers else {}
        rows: list[ForecastRow] = []
        for teacher in teachers:
            prices = teacher_prices(teacher)
            # Reviews by this teacher score every other teacher's rationale.
            others_rationale = sum(expected_out(ds.task, u, "rationale") for u in teachers if u is not teacher)
            for stage in STAGES:
                per_item = n_teachers - 1 if stage == "review" else 1
                calls = n * per_item
                tin = prompt[stage] * scale * per_item + (n * others_rationale if stage == "review" else 0)
                tout = calls * expected_out(ds.task, teacher, stage)
                rows.append(ForecastRow(
                    dataset=ds.task, teacher=teacher.name, stage=stage, calls=calls, input_tokens=round(tin),
                    output_tokens=round(tout), usd=cost_usd(prices, round(tin), round(tout)),
                ))
                acc = load[teacher.name]
                acc[0] += calls
                acc[1] += tin + tout
                acc[2] += tout
        sections.append(_dataset_section(ds.task, n, assumed, rows))

    walls = [_teacher_wall(cfg, t, *load[t.name], latency_s) for t in teachers]
    usd: float | None = 0.0
    for s in sections:
        usd = None if usd is None or s.usd is None else usd + s.usd
    return Forecast(
        datasets=sections, teachers=walls, calls=sum(s.calls for s in sections), usd=usd,
        wall_s=max((w.wall_s for w in walls), default=0.0), output_tokens_source=source,
        max_usd=cfg.review.max_usd,
    )


def _dataset_section(task: str, n: int, assumed: bool, rows: list[ForecastRow]) -> DatasetForecast:
    usd: float | None = 0.0
    for r in rows:
        usd = None if usd is None or r.usd is None else usd + r.usd
    return DatasetForecast(
        task=task, mistakes=n, assumed=assumed, rows=rows, calls=sum(r.calls for r in rows),
        input_tokens=sum(r.input_tokens for r in rows), output_tokens=sum(r.output_tokens for r in rows), usd=usd,
    )


def _teacher_wall(
    cfg: Config, teacher: TeacherSection, calls: float, tokens: float, out_tokens: float, latency_s: float | None
) -> TeacherWall:
    latency = _latency_s(cfg, teacher, out_tokens / calls if calls else 0.0, latency_s)
    bounds = {
        "rpm": calls / (teacher.rpm / 60.0) if teacher.rpm else None,
        "tpm": tokens / (teacher.tpm / 60.0) if teacher.tpm else None,
        "in_flight": calls * latency / teacher.max_in_flight,
    }
    bound, wall = max(((k, v) for k, v in bounds.items() if v is not None), key=lambda kv: kv[1])
    return TeacherWall(
        teacher=teacher.name, calls=int(calls), tokens=round(tokens), latency_s=latency, rpm_s=bounds["rpm"],
        tpm_s=bounds["tpm"], in_flight_s=bounds["in_flight"], wall_s=wall, bound=bound,
    )


def forecast_tables(fc: Forecast) -> list[Table]:
    """The forecast as tables: per dataset x teacher x stage, then each teacher's wall time."""
    rows = []
    for ds in fc.datasets:
        for r in ds.rows:
            rows.append([r.dataset, r.teacher, r.stage, fmt_num(r.calls), fmt_num(r.input_tokens),
                         fmt_num(r.output_tokens), fmt_usd(r.usd)])
        label = f"{ds.task} total ({ds.mistakes:,} {'assumed ' if ds.assumed else ''}mistakes)"
        rows.append([label, "", "", fmt_num(ds.calls), fmt_num(ds.input_tokens), fmt_num(ds.output_tokens),
                     fmt_usd(ds.usd)])
    note = f"Output tokens per call from {fc.output_tokens_source}. Total {fmt_num(fc.calls)} calls, {fmt_usd(fc.usd)}."
    if fc.max_usd is not None and fc.usd is not None and fc.usd > fc.max_usd:
        note += f" The spending cap ({fmt_usd(fc.max_usd)}) stops the run at about {fc.max_usd / fc.usd:.0%} of this."
    calls = Table(title="Dry run: calls that would be sent", headers=[
        "dataset", "teacher", "stage", "calls", "input tok", "output tok", "USD"], rows=rows, note=note, text_columns=3)
    wall = Table(
        title="Dry run: wall time the limits imply (teachers run in parallel)",
        headers=["teacher", "calls", "tokens", "by RPM", "by TPM", "by in-flight", "bound", "wall"],
        rows=[[w.teacher, fmt_num(w.calls), fmt_num(w.tokens), fmt_duration(w.rpm_s), fmt_duration(w.tpm_s),
               fmt_duration(w.in_flight_s), w.bound, fmt_duration(w.wall_s)] for w in fc.teachers],
        note=f"Teacher stages take about {fmt_duration(fc.wall_s)} (the slowest teacher); "
             f"in-flight bound assumes {', '.join(f'{w.teacher} {w.latency_s:.2f}s' for w in fc.teachers)} per call.",
    )
    return [calls, wall]


def print_forecast(fc: Forecast, console: Console, out_dir: Path | None = None) -> None:
    """Print the forecast as rich tables, and write `forecast.json` into `out_dir` when it exists."""
    for table in forecast_tables(fc):
        console.print(to_rich(table))
    if out_dir is not None and Path(out_dir).is_dir():
        path = Path(out_dir) / "forecast.json"
        path.write_bytes(msgspec.json.format(msgspec.json.encode(fc), indent=2) + b"\n")
        log.info("forecast written to %s", path)
