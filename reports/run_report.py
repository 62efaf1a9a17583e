"""The end-of-run report: `report.md`, `report.json`, the same tables in the terminal, and PNG plots.

Everything comes from the run directory: the store (calls, decided samples,
stage and spending-cap events), `mistakes.jsonl`, `eval.json` and
`train_log.jsonl`. Any of them may be missing (a killed teach stage, no training
yet, no eval): the report says what is absent instead of failing, so it can be
rebuilt at any point with `--stage report`.

Per dataset: mistakes found, teacher calls and USD per teacher x stage,
acceptance per teacher (the paper's Table 4), output tokens per sample with and
without review (Table 5), included samples, accuracy before and after training
with 95% intervals. For the run: wall time per stage, how close each teacher ran
to its rate limits, the training curve summary, and where the spending cap stopped it.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import msgspec
from rich.console import Console

from accounting import ledger
from accounting.batch_counts import BatchCounts, BatchView, batch_counts, batch_views, batches_table
from core.config import Config
from core.tables import Table, fmt_duration, fmt_num, fmt_pct, fmt_usd, join_markdown, to_markdown, to_rich
from core.timings import PhaseTime, read_phases
from reports.cost import (
    STORE_FILE,
    BudgetStop,
    CostReport,
    DatasetCost,
    batch_counts_table,
    build_cost_report,
    cost_tables,
    ledger_connection,
    write_cost_report,
)
from reports.forecast_check import ForecastCheckRow, check_forecast, forecast_check_table, read_forecast
from student.evaluate import BASE, EvalEntry, EvalFile
from trainer.step_log import TrainStepRow, read_step_log

log = logging.getLogger(__name__)


class DatasetReport(msgspec.Struct, kw_only=True):
    task: str
    mistakes: int | None
    mistakes_source: str
    cost: DatasetCost | None
    evals: list[EvalEntry] = []
    before: EvalEntry | None = None
    after: EvalEntry | None = None


class TeacherRate(msgspec.Struct, kw_only=True):
    """Achieved rates over a teacher's busy time against its configured limits (fractions of them)."""

    teacher: str
    calls: int
    requests: int
    busy_s: float
    requests_per_min: float
    tokens_per_min: float
    rpm: float | None = None
    tpm: float | None = None
    rpm_used: float | None = None
    tpm_used: float | None = None


class TrainSummary(msgspec.Struct, kw_only=True):
    steps: int
    epochs: float | None
    first_loss: float | None
    last_loss: float | None
    mean_tokens_per_s: float | None


class RunReport(msgspec.Struct, kw_only=True):
    run: str
    generated_at: str
    total_usd: float | None
    datasets: list[DatasetReport]
    teachers: list[TeacherRate]
    stage_walls: list[ledger.StageWall]
    budget: BudgetStop | None
    train: TrainSummary | None
    plots: dict[str, str]
    notes: list[str]
    forecast: list[ForecastCheckRow] = []
    # Where the latest invocation's wall time went (timings.jsonl), in the order the phases ended.
    phases: list[PhaseTime] = []
    # The batch teachers' provider batches (none for a sync-only run): counts per teacher, then each batch.
    batch_counts: list[BatchCounts] = []
    batches: list[BatchView] = []


def _count_mistakes(out_dir: Path, task: str, cost: DatasetCost | None) -> tuple[int | None, str]:
    """Mistakes found for `task`: the exam's file, else the decided samples in the store."""
    part = out_dir / "exam" / f"mistakes_{task}.jsonl"
    if part.is_file():
        with part.open("rb") as f:
            return sum(1 for line in f if line.strip()), "exam"
    if cost is not None and cost.samples:
        return cost.samples, "decided samples"
    return None, "none yet"


def read_evals(path: Path) -> list[EvalEntry]:
    """The entries of `eval.json`; empty when the file is absent or unreadable (logged)."""
    if not path.is_file():
        return []
    try:
        return msgspec.json.decode(path.read_bytes(), type=EvalFile).evals
    except msgspec.DecodeError as exc:
        log.warning("%s: not a readable eval.json (%s); accuracy left out of the report", path, exc)
        return []


def _train_summary(rows: Sequence[TrainStepRow]) -> TrainSummary | None:
    if not rows:
        return None
    speeds = [r.tokens_per_s for r in rows if r.tokens_per_s is not None]
    losses = [r.loss for r in rows if r.loss is not None]
    return TrainSummary(
        steps=rows[-1].step,
        epochs=rows[-1].epoch,
        first_loss=losses[0] if losses else None,
        last_loss=losses[-1] if losses else None,
        mean_tokens_per_s=sum(speeds) / len(speeds) if speeds else None,
    )


def _teacher_rates(conn: sqlite3.Connection, cfg: Config | None) -> list[TeacherRate]:
    limits = {t.name: t for t in cfg.teachers} if cfg is not None else {}
    out = []
    for name, use in sorted(ledger.teacher_usage(conn).items()):
        t = limits.get(name)
        rpm, tpm = (t.rpm, t.tpm) if t is not None else (None, None)
        out.append(
            TeacherRate(
                teacher=name,
                calls=use.calls,
                requests=use.requests,
                busy_s=use.busy_s,
                requests_per_min=use.requests_per_min,
                tokens_per_min=use.tokens_per_min,
                rpm=rpm,
                tpm=tpm,
                rpm_used=use.requests_per_min / rpm if rpm else None,
                tpm_used=use.tokens_per_min / tpm if tpm else None,
            )
        )
    return out


def open_teacher_ledger(out_dir: Path) -> sqlite3.Connection | None:
    """A read-only connection to the run store's teacher tables, or None before the teach stage made them.

    An exam alone leaves a store holding only the student's answers, which the
    teacher queries cannot read.
    """
    db = out_dir / STORE_FILE
    if not db.is_file():
        return None
    conn = ledger_connection(db)
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'samples'").fetchone() is None:
        conn.close()
        return None
    return conn


def build_run_report(out_dir: Path, cfg: Config | None = None) -> RunReport:
    """Gather the report's figures from `out_dir` (no files written)."""
    out_dir = Path(out_dir)
    tasks = [d.task for d in cfg.datasets] if cfg is not None else []
    conn = open_teacher_ledger(out_dir)
    notes: list[str] = []
    try:
        costs = (
            {s.task: s for s in build_cost_report(conn, tasks, cfg.run.seed if cfg else 731).datasets}
            if conn is not None
            else {}
        )
        teachers = _teacher_rates(conn, cfg) if conn is not None else []
        walls = ledger.stage_walls(conn) if conn is not None else []
        fc = read_forecast(out_dir)
        forecast = check_forecast(fc, conn) if fc is not None and conn is not None else []
        counts = batch_counts(conn) if conn is not None else []
        batches = batch_views(conn) if conn is not None else []
    finally:
        if conn is not None:
            conn.close()
    if conn is None:
        notes.append("No run store yet: the teach stage has not run, so there are no teacher figures.")
    evals = read_evals(out_dir / "eval.json")
    order = list(tasks)
    order += [t for t in dict.fromkeys([*costs, *(e.task for e in evals)]) if t not in order]
    sections = []
    for task in order:
        mine = [e for e in evals if e.task == task]
        after = [e for e in mine if e.checkpoint != BASE]
        mistakes, source = _count_mistakes(out_dir, task, costs.get(task))
        sections.append(
            DatasetReport(
                task=task,
                mistakes=mistakes,
                mistakes_source=source,
                cost=costs.get(task),
                evals=mine,
                before=next((e for e in mine if e.checkpoint == BASE), None),
                # The SFT model is the method's "after"; a later DPO model has its own row in the eval table.
                after=next((e for e in after if e.checkpoint == "model"), after[-1] if after else None),
            )
        )
    if not evals:
        notes.append("No eval.json: accuracy before and after training is not measured yet (run --stage eval).")
    train = _train_summary(read_step_log(out_dir / "train_log.jsonl", TrainStepRow))
    if train is None:
        notes.append("No train_log.jsonl: the student has not been trained yet (run --stage train).")
    budget = next((s.cost.budget for s in sections if s.cost is not None and s.cost.stopped_at_budget), None)
    total: float | None = 0.0
    for s in sections:
        total = ledger.add_usd(total, s.cost.total.usd if s.cost is not None else 0.0)
    return RunReport(
        run=cfg.run.name if cfg is not None else out_dir.name,
        generated_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        total_usd=total,
        datasets=sections,
        teachers=teachers,
        stage_walls=walls,
        budget=budget,
        train=train,
        plots={},
        notes=notes,
        forecast=forecast,
        phases=read_phases(out_dir),
        batch_counts=counts,
        batches=batches,
    )


def phase_table(phases: Sequence[PhaseTime]) -> Table:
    """Where the run's time went: each phase's wall time and, where it generated or trained, tokens per second.

    A stage's "all" row is the whole stage; the rows above it are its parts, so
    they are not added twice. Teach streams beside the exam, so their walls overlap.
    """
    rows = []
    for p in phases:
        rate = p.tokens / p.wall_s if p.tokens is not None and p.wall_s > 0 else None
        rows.append([p.stage, p.phase, fmt_duration(p.wall_s), fmt_num(p.tokens), fmt_num(rate), p.note or ""])
    return Table(
        title=f"Where this run's time went (started {phases[0].run_id[:19].replace('T', ' ')} UTC)",
        headers=["stage", "phase", "wall", "tokens", "tokens/s", "note"],
        text_columns=2,
        rows=rows,
    )


def draw_plots(report: RunReport, out_dir: Path, cfg: Config | None = None) -> None:
    """Write the PNG plots into `out_dir/plots/` and record them (or why one is absent) in the report."""
    try:
        from reports import plots  # matplotlib is an optional dependency (the `train` extra)
    except ImportError:
        report.notes.append("Plots skipped: matplotlib is not installed (pip install matplotlib).")
        return
    out_dir = Path(out_dir)
    folder = out_dir / "plots"
    rates, spend = {}, {}
    conn = open_teacher_ledger(out_dir)
    if conn is not None:
        try:
            rates, spend = ledger.call_rate(conn), ledger.cumulative_usd(conn)
        finally:
            conn.close()
    rpm = {t.name: t.rpm for t in cfg.teachers} if cfg is not None else {}
    log_rows = read_step_log(out_dir / "train_log.jsonl", TrainStepRow)
    curves = {
        "joint": [r.loss for r in log_rows],
        "feedback": [r.loss_feedback for r in log_rows],
        "rationale": [r.loss_rationale for r in log_rows],
    }

    def bar(e: EvalEntry | None) -> tuple[float, float, float] | None:
        return (e.accuracy, e.ci_low, e.ci_high) if e is not None else None

    accuracy = {
        s.task: (bar(s.before), bar(s.after)) for s in report.datasets if s.before is not None or s.after is not None
    }
    drawn = {
        "calls_per_s": (plots.plot_call_rate(rates, rpm, folder / "calls_per_s.png"), "no teacher calls"),
        "cumulative_usd": (plots.plot_cumulative_usd(spend, folder / "cumulative_usd.png"), "no priced calls"),
        "train_loss": (
            plots.plot_train_loss([r.step for r in log_rows], curves, folder / "train_loss.png"),
            "no training log",
        ),
        "accuracy": (plots.plot_accuracy(accuracy, folder / "accuracy.png"), "no eval results"),
    }
    for name, (path, why) in drawn.items():
        if path is None:
            report.notes.append(f"Plot {name} skipped: {why}.")
        else:
            report.plots[name] = str(path.relative_to(out_dir))


def report_tables(report: RunReport) -> list[Table]:
    """Every table of the report, in reading order."""
    tables: list[Table] = []
    for s in report.datasets:
        c = s.cost
        summary = [
            ["mistakes found", f"{fmt_num(s.mistakes)} ({s.mistakes_source})"],
            ["decided samples", fmt_num(c.samples if c else None)],
            ["included samples", fmt_num(c.included if c else None)],
            ["teacher calls", fmt_num(c.total.calls if c else None)],
            ["USD", fmt_usd(c.total.usd) if c else "-"],
            ["USD per included sample", fmt_usd(c.usd_per_included) if c and c.included else "-"],
            ["calls still missing", fmt_num(c.missing_calls if c else None)],
            ["stopped by the spending cap", ("yes" if c.stopped_at_budget else "no") if c else "-"],
        ]
        tables.append(Table(title=f"{s.task}: summary", headers=["", "value"], rows=summary))
        if c is not None:
            tables += cost_tables(c)
        tables.append(
            Table(
                title=f"{s.task}: student accuracy (95% Wilson interval)",
                headers=["checkpoint", "model", "n", "correct", "accuracy", "interval"],
                text_columns=2,
                rows=[
                    [
                        e.checkpoint,
                        e.model,
                        fmt_num(e.n),
                        fmt_num(e.correct),
                        fmt_pct(e.accuracy),
                        f"{fmt_pct(e.ci_low)} - {fmt_pct(e.ci_high)}",
                    ]
                    for e in s.evals
                ],
                note=_accuracy_note(s),
            )
        )
    if len(report.datasets) > 1:
        # Side by side: with [train] per_dataset each row's trained student is that benchmark's own (models/<task>/).
        tables.append(
            Table(
                title="Students side by side: accuracy before and after training",
                headers=["dataset", "base", "trained", "change"],
                rows=[
                    [
                        s.task,
                        fmt_pct(s.before.accuracy) if s.before else "-",
                        fmt_pct(s.after.accuracy) if s.after else "-",
                        f"{100 * (s.after.accuracy - s.before.accuracy):+.1f} pts" if s.before and s.after else "-",
                    ]
                    for s in report.datasets
                ],
            )
        )
    tables.append(
        Table(
            title="Wall time per stage",
            headers=["stage", "dataset", "wall", "finished"],
            text_columns=2,
            rows=[
                [w.stage, w.dataset or "all", fmt_duration(w.wall_s), "yes" if w.finished else "no (killed?)"]
                for w in report.stage_walls
            ],
        )
    )
    if report.phases:
        tables.append(phase_table(report.phases))
    tables.append(
        Table(
            title="Teachers against their rate limits (over each one's busy time)",
            headers=[
                "teacher",
                "calls",
                "requests",
                "busy",
                "req/min",
                "limit rpm",
                "of rpm",
                "tok/min",
                "limit tpm",
                "of tpm",
            ],
            rows=[
                [
                    t.teacher,
                    fmt_num(t.calls),
                    fmt_num(t.requests),
                    fmt_duration(t.busy_s),
                    fmt_num(t.requests_per_min),
                    fmt_num(t.rpm),
                    fmt_pct(t.rpm_used),
                    fmt_num(t.tokens_per_min, 0),
                    fmt_num(t.tpm, 0),
                    fmt_pct(t.tpm_used),
                ]
                for t in report.teachers
            ],
        )
    )
    if report.batches:
        tables.append(batch_counts_table("Batches per teacher (the whole run)", report.batch_counts))
        tables.append(
            batches_table(
                "Batches",
                report.batches,
                "Each provider batch of the run: its state, requests and the provider's counts; age is how long it "
                "took (planned to closed), or has been out so far for one still open (a rerun collects it).",
            )
        )
    if report.forecast:
        tables.append(forecast_check_table(report.forecast))
    if report.train is not None:
        tr = report.train
        tables.append(
            Table(
                title="Training",
                headers=["", "value"],
                rows=[
                    ["optimizer steps", fmt_num(tr.steps)],
                    ["epochs", fmt_num(tr.epochs, 2)],
                    ["loss first -> last", f"{fmt_num(tr.first_loss, 3)} -> {fmt_num(tr.last_loss, 3)}"],
                    ["mean tokens/s", fmt_num(tr.mean_tokens_per_s)],
                ],
            )
        )
    return tables


def _accuracy_note(s: DatasetReport) -> str:
    if s.before is None or s.after is None:
        return "Before/after comparison needs both the base and a trained checkpoint in eval.json."
    delta = 100 * (s.after.accuracy - s.before.accuracy)
    return f"{fmt_pct(s.before.accuracy)} -> {fmt_pct(s.after.accuracy)} ({delta:+.1f} points)."


def _closing_lines(report: RunReport) -> list[str]:
    lines = [f"Total spend: {fmt_usd(report.total_usd)}."]
    if report.budget is not None:
        b = report.budget
        where = f" at {dt.datetime.fromtimestamp(b.at, dt.timezone.utc).isoformat(timespec='seconds')}" if b.at else ""
        spent = f" with {fmt_usd(b.event.spent_usd)} spent of {fmt_usd(b.event.max_usd)}" if b.event else ""
        lines.append(
            f"The spending cap stopped new calls{where}{spent}; {b.skipped_calls} calls were not sent. "
            "Raise review.max_usd and rerun to finish."
        )
    lines += report.notes
    return lines


def write_run_report(report: RunReport, out_dir: Path) -> tuple[Path, Path]:
    """Write `report.json` and `report.md` into `out_dir`; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    json_path.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n")
    sections = [to_markdown(t) for t in report_tables(report)]
    sections.append("".join(f"- {line}\n" for line in _closing_lines(report)))
    sections += [f"![{name}]({path})\n" for name, path in report.plots.items()]
    md_path.write_text(join_markdown(f"Run report: {report.run}", sections), encoding="utf-8")
    return json_path, md_path


def print_run_report(report: RunReport, console: Console) -> None:
    """The report's tables and closing lines on the terminal."""
    for table in report_tables(report):
        console.print(to_rich(table))
    for line in _closing_lines(report):
        console.print(line)
    for name, path in report.plots.items():
        console.print(f"plot {name}: {path}")


def run_report(out_dir: Path, cfg: Config | None = None, console: Console | None = None) -> RunReport:
    """Write every report of a run: cost_report.{json,md}, report.{json,md} and plots/; print when given a console.

    Works on any partial run directory, including one with no store yet.
    """
    out_dir = Path(out_dir)
    report = build_run_report(out_dir, cfg)
    costs = [s.cost for s in report.datasets if s.cost is not None]
    if costs:
        write_cost_report(
            CostReport(
                datasets=costs,
                total_usd=report.total_usd,
                generated_at=report.generated_at,
                possibly_usd=sum(c.total.possibly_usd for c in costs),
                batches=report.batch_counts,
            ),
            out_dir,
        )
    draw_plots(report, out_dir, cfg)
    write_run_report(report, out_dir)
    if console is not None:
        print_run_report(report, console)
    return report
