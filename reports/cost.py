"""The cost report per dataset: `cost_report.json`, `cost_report.md` and rich tables.

Built from the run store alone (calls and decided samples), so `--stage report`
rebuilds it at any time, also for a killed or partial run. Per dataset: calls,
failures, retries, tokens as the providers reported them and USD per teacher x
stage (everything billed, answers without usable text included), and apart the
"possibly billed" worst case of attempts sent and never answered; the total; USD
per included sample; who contributed the accepted
rationales (the paper's Table 4); output tokens per sample without and with peer
review (Table 5); what the skip options saved; whether the spending cap stopped it.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import msgspec
from rich.console import Console

from accounting import ledger
from accounting.batch_counts import BatchCounts, batch_counts
from core.samples import DecidedSample
from core.tables import (
    Table,
    fmt_num,
    fmt_pct,
    fmt_usd,
    join_markdown,
    to_markdown,
    to_rich,
)
from dataset.writer import decode_samples, picked_teacher
from store.calls import CallMode, sample_bodies
from store.events import BudgetReached, read_events

STORE_FILE = "store.sqlite"


class CostRow(msgspec.Struct, kw_only=True):
    """One teacher x stage of a dataset; `usd` None = unknown price.

    `usd` and the tokens are what the providers reported billing, whatever the call's
    outcome; `possibly_usd` is the worst case (prompt + max_tokens) of attempts sent
    and never answered, which a provider may have billed; `unusable` counts calls
    whose last answer was billed without usable text. `reasoning_tokens` are inside
    `output_tokens` (`reasoning_usd` their part of `usd`), `cache_read_tokens` and
    `cache_write_tokens` inside `input_tokens`, each priced at its own rate. `mode`: "batch"
    for calls answered through a Batch API (at batch prices); a batch teacher whose requests
    fell back to its sync lane has rows of both modes.
    """

    teacher: str
    stage: str
    calls: int
    failed: int
    retries: int
    input_tokens: int
    output_tokens: int
    usd: float | None
    http_429: int = 0
    cached: int = 0
    skipped: dict[str, int] = {}
    possibly_usd: float = 0.0
    unusable: int = 0
    usage_estimated: int = 0
    reasoning_tokens: int = 0
    reasoning_usd: float = 0.0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    mode: CallMode = "sync"


class Acceptance(msgspec.Struct, kw_only=True):
    """A teacher's rationales, how many peers accepted, and its share of the included samples' accepted ones."""

    rationales: int = 0
    accepted: int = 0
    rate: float | None = None
    share_of_included: float | None = None
    accepted_in_included: int = 0
    # The paper's Table 4 counts the teacher of the rationale picked for training, once per included sample.
    picked: int = 0
    picked_share: float | None = None


class ReviewValidity(msgspec.Struct, kw_only=True):
    """One reviewer's reviews and how many held no valid 1..5 score, per way the scores were read."""

    reviewer: str
    # "brackets": the paper's free text ending in "[4]"; "structured": the provider's structured output.
    parsed_by: Literal["brackets", "structured"]
    reviews: int = 0
    without_score: int = 0
    share: float | None = None


class TokensPerSample(msgspec.Struct, kw_only=True):
    without_review: float
    with_review: float


class BudgetStop(msgspec.Struct, kw_only=True):
    """Where the spending cap stopped new calls (from the `budget_reached` event, when there is one)."""

    at: float | None = None
    event: BudgetReached | None = None
    skipped_calls: int = 0


class DatasetCost(msgspec.Struct, kw_only=True):
    task: str
    rows: list[CostRow]
    total: ledger.Totals
    samples: int
    included: int
    usd_per_included: float | None
    acceptance: dict[str, Acceptance]
    tokens_per_sample: dict[str, TokensPerSample]
    saved: ledger.Savings
    stopped_at_budget: bool
    budget: BudgetStop | None = None
    missing_calls: int = 0
    review_validity: list[ReviewValidity] = []
    # Per batch teacher: its batches carrying this dataset's requests (none for a sync-only run).
    batches: list[BatchCounts] = []


class CostReport(msgspec.Struct, kw_only=True):
    datasets: list[DatasetCost]
    total_usd: float | None
    generated_at: str
    possibly_usd: float = 0.0
    # Per batch teacher, over the whole run.
    batches: list[BatchCounts] = []


def decided_samples(conn: sqlite3.Connection, dataset: str) -> list[DecidedSample]:
    """The dataset's decided samples from the store, in mistake order."""
    return decode_samples(sample_bodies(conn, dataset))


def acceptance(samples: Sequence[DecidedSample], seed: int = 731) -> dict[str, Acceptance]:
    """Per teacher: rationales written, accepted, the share of accepted rationales in included samples,
    and how many included samples train on its rationale.

    `picked` is what the paper's Table 4 counts (on SVAMP 161 : 87 : 117 for Mixtral :
    Gemini : GPT): per included sample, the teacher of the one rationale picked for
    training (with the run `seed`, as train.jsonl picks it). `share_of_included` is
    the share of all accepted rationales of included samples, which several per
    sample can have.
    """
    table: dict[str, Acceptance] = {}
    for sample in samples:
        for r in sample.rationales:
            a = table.setdefault(r.teacher, Acceptance())
            if r.text is not None:
                a.rationales += 1
            if r.accepted:
                a.accepted += 1
                a.accepted_in_included += int(sample.included)
        picked = picked_teacher(sample, seed)
        if picked is not None:
            table.setdefault(picked, Acceptance()).picked += 1
    in_included = sum(a.accepted_in_included for a in table.values())
    for a in table.values():
        a.rate = a.accepted / a.rationales if a.rationales else None
        a.share_of_included = a.accepted_in_included / in_included if in_included else None
    picked = sum(a.picked for a in table.values())
    for a in table.values():
        a.picked_share = a.picked / picked if picked else None
    return dict(sorted(table.items()))


def review_validity(samples: Sequence[DecidedSample]) -> list[ReviewValidity]:
    """Per reviewer and way of reading scores: reviews answered, and those without a valid score.

    A review without a valid score (None in `scores`) counts for nothing in the mean, so a
    reviewer that often forgets the brackets quietly leaves decisions to the others.
    """
    table: dict[tuple[str, str], ReviewValidity] = {}
    for sample in samples:
        structured = sample.decided_with is not None and sample.decided_with.structured
        parsed_by = "structured" if structured else "brackets"
        for r in sample.rationales:
            for reviewer, score in r.scores.items():
                v = table.setdefault((reviewer, parsed_by), ReviewValidity(reviewer=reviewer, parsed_by=parsed_by))
                v.reviews += 1
                v.without_score += score is None
    for v in table.values():
        v.share = v.without_score / v.reviews if v.reviews else None
    return [table[k] for k in sorted(table)]


def _budget_stop(
    conn: sqlite3.Connection, task: str, rows: list[ledger.StageLedger], missing: int
) -> BudgetStop | None:
    """Whether the cap stopped this dataset: its event names the dataset among those it stopped, or,
    for an event naming none (an older store), the dataset has calls the cap withheld or still missing.
    """
    skipped = sum(r.skipped.get("budget", 0) for r in rows)
    for at, event in read_events(conn, BudgetReached):
        named = event.datasets
        if (task in named) if named is not None else (skipped or missing):
            return BudgetStop(at=at, event=event, skipped_calls=skipped)
    return BudgetStop(skipped_calls=skipped) if skipped else None


def dataset_cost(conn: sqlite3.Connection, task: str, seed: int = 731) -> DatasetCost:
    """The cost figures of one dataset (task name) from the store."""
    stage_rows = ledger.stage_ledger(conn, task)
    total = ledger.totals(stage_rows)
    samples = decided_samples(conn, task)
    included = sum(s.included for s in samples)
    missing = len(ledger.missing_slots(conn, task))
    budget = _budget_stop(conn, task, stage_rows, missing)
    return DatasetCost(
        task=task,
        rows=[
            CostRow(
                teacher=r.teacher,
                stage=r.stage,
                calls=r.calls,
                failed=r.failed,
                retries=r.retries,
                input_tokens=r.input_tokens,
                output_tokens=r.output_tokens,
                usd=r.usd,
                http_429=r.http_429,
                cached=r.cached,
                skipped=r.skipped,
                possibly_usd=r.possibly_usd,
                unusable=r.unusable,
                usage_estimated=r.usage_estimated,
                reasoning_tokens=r.reasoning_tokens,
                reasoning_usd=r.reasoning_usd,
                cache_read_tokens=r.cache_read_tokens,
                cache_write_tokens=r.cache_write_tokens,
                mode=r.mode,
            )
            for r in stage_rows
        ],
        total=total,
        samples=len(samples),
        included=included,
        usd_per_included=total.usd / included if total.usd is not None and included else None,
        acceptance=acceptance(samples, seed),
        tokens_per_sample={
            t: TokensPerSample(without_review=a, with_review=b)
            for t, (a, b) in ledger.tokens_per_sample(conn, task).items()
        },
        saved=ledger.savings(conn, task),
        stopped_at_budget=budget is not None,
        budget=budget,
        missing_calls=missing,
        review_validity=review_validity(samples),
        batches=batch_counts(conn, task),
    )


def build_cost_report(conn: sqlite3.Connection, tasks: Sequence[str] | None = None, seed: int = 731) -> CostReport:
    """The cost report over a store; `tasks` fixes the dataset order (default: as they appear in the store).

    `seed`: the run's, which picks each sample's training rationale (Table 4 as the paper counts it).

    A task listed but absent from the store gets an empty section.
    """
    order = list(tasks) if tasks is not None else []
    order += [d for d in ledger.datasets(conn) if d not in order]
    sections = [dataset_cost(conn, t, seed) for t in order]
    total: float | None = 0.0
    for s in sections:
        total = ledger.add_usd(total, s.total.usd)
    return CostReport(
        datasets=sections,
        total_usd=total,
        possibly_usd=sum(s.total.possibly_usd for s in sections),
        batches=batch_counts(conn),
        generated_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )


def cost_tables(section: DatasetCost) -> list[Table]:
    """A dataset's cost figures as tables: teacher x stage, acceptance (Table 4), tokens per sample (Table 5)."""
    head = [
        "teacher",
        "mode",
        "stage",
        "calls",
        "failed",
        "retries",
        "429s",
        "cached",
        "skipped",
        "input tok",
        "of which cached",
        "cache writes",
        "output tok",
        "of which reasoning",
        "USD",
        "reasoning share",
        "possibly billed USD",
    ]
    rows = [
        [
            r.teacher,
            r.mode,
            r.stage,
            fmt_num(r.calls),
            fmt_num(r.failed),
            fmt_num(r.retries),
            fmt_num(r.http_429),
            fmt_num(r.cached),
            _fmt_skipped(r.skipped),
            fmt_num(r.input_tokens),
            fmt_num(r.cache_read_tokens),
            fmt_num(r.cache_write_tokens),
            fmt_num(r.output_tokens),
            fmt_num(r.reasoning_tokens),
            fmt_usd(r.usd),
            _share(r.reasoning_usd, r.usd),
            fmt_usd(r.possibly_usd),
        ]
        for r in section.rows
    ]
    t = section.total
    rows.append(
        [
            "total",
            "",
            "",
            fmt_num(t.calls),
            fmt_num(t.failed),
            fmt_num(t.retries),
            fmt_num(t.http_429),
            fmt_num(t.cached),
            fmt_num(t.skipped),
            fmt_num(t.input_tokens),
            fmt_num(t.cache_read_tokens),
            fmt_num(t.cache_write_tokens),
            fmt_num(t.output_tokens),
            fmt_num(t.reasoning_tokens),
            fmt_usd(t.usd),
            _share(t.reasoning_usd, t.usd),
            fmt_usd(t.possibly_usd),
        ]
    )
    notes = [
        f"{section.included} of {section.samples} decided samples included; "
        f"{fmt_usd(section.usd_per_included) if section.included else '-'} per included sample.",
        f"Skip options saved {section.saved.calls} review calls ({fmt_usd(section.saved.usd)} estimated).",
    ]
    if t.possibly_usd:
        notes.append(
            f"Possibly billed: the worst case of attempts sent and never answered (timeouts, resets, "
            f"cancellations), {fmt_usd(t.possibly_usd)}; providers may bill them, the cap counts them."
        )
    if t.unusable:
        notes.append(
            f"{t.unusable} calls ended on an answer billed without usable text (filtered, refused, "
            "truncated or empty); their tokens are in the USD column."
        )
    if t.usage_estimated:
        notes.append(f"{t.usage_estimated} calls came back without usage; their tokens are our estimate.")
    if t.reasoning_tokens:
        notes.append(
            f"Reasoning: {fmt_num(t.reasoning_tokens)} thinking tokens, billed as output, "
            f"{fmt_usd(t.reasoning_usd)} ({_share(t.reasoning_usd, t.usd)} of USD); Anthropic reports no split, "
            "so its figure is output minus the visible answer, estimated."
        )
    if t.cache_read_tokens or t.cache_write_tokens:
        notes.append("Cached prompt tokens and cache writes are priced at their own rates (accounting/pricing.py).")
    if section.missing_calls:
        notes.append(f"{section.missing_calls} calls failed or were not sent; rerun the same config to send them.")
    if section.stopped_at_budget:
        notes.append("The spending cap (review.max_usd) stopped this dataset before it finished.")
    if any(r.mode == "batch" for r in section.rows):
        notes.append("Rows of mode `batch` were answered through the provider's Batch API, at batch prices.")
    calls = Table(
        title=f"{section.task}: teacher calls and cost", headers=head, rows=rows, note=" ".join(notes), text_columns=3
    )
    accept = Table(
        title=f"{section.task}: acceptance per teacher (paper's Table 4)",
        headers=[
            "teacher",
            "rationales",
            "accepted",
            "rate",
            "accepted in included",
            "share of included",
            "picked (Table 4)",
            "picked share",
        ],
        rows=[
            [
                name,
                fmt_num(a.rationales),
                fmt_num(a.accepted),
                fmt_pct(a.rate),
                fmt_num(a.accepted_in_included),
                fmt_pct(a.share_of_included),
                fmt_num(a.picked),
                fmt_pct(a.picked_share),
            ]
            for name, a in section.acceptance.items()
        ],
        note="Table 4 as the paper counts it: `picked` is the teacher of the one rationale each included sample "
        "trains on (picked with the run seed, as train.jsonl); `share of included` counts every accepted "
        "rationale of the included samples instead.",
    )
    tokens = Table(
        title=f"{section.task}: output tokens per sample (paper's Table 5)",
        headers=["teacher", "without review", "with review", "ratio"],
        rows=[
            [
                name,
                fmt_num(v.without_review),
                fmt_num(v.with_review),
                f"{v.with_review / v.without_review:.2f}x" if v.without_review else "-",
            ]
            for name, v in section.tokens_per_sample.items()
        ],
        note="Table 5's definition: output tokens a teacher generates per sample; `without review` = its rationale "
        "and feedback, `with review` adds the reviews it wrote of the other teachers' rationales; both divided by "
        "the samples it wrote a rationale or feedback for (completed calls only, thinking tokens included).",
    )
    validity = Table(
        title=f"{section.task}: reviews without a valid score, per reviewer",
        headers=["reviewer", "scores read from", "reviews", "without a valid score", "share"],
        rows=[
            [v.reviewer, v.parsed_by, fmt_num(v.reviews), fmt_num(v.without_score), fmt_pct(v.share)]
            for v in section.review_validity
        ],
        note="`brackets`: the paper's free-text review, its score the last bracketed number; `structured`: "
        "`[review] structured = true`, the score a field of the provider's structured output. A review without a "
        "valid 1..5 score does not count in the mean.",
        text_columns=2,
    )
    tables = [calls, accept, tokens, validity]
    if section.batches:
        tables.append(batch_counts_table(f"{section.task}: batches per teacher", section.batches))
    return tables


def batch_counts_table(title: str, counts: Sequence[BatchCounts]) -> Table:
    """Per batch teacher: batches, their requests, resubmissions, and batches that ended badly."""
    return Table(
        title=title,
        headers=[
            "teacher",
            "batches",
            "requests",
            "resubmitted",
            "succeeded",
            "errored",
            "expired",
            "failed",
            "cancelled",
            "open",
        ],
        rows=[
            [
                c.teacher,
                *(
                    fmt_num(v)
                    for v in (
                        c.batches,
                        c.requests,
                        c.resubmitted,
                        c.succeeded,
                        c.errored,
                        c.expired,
                        c.failed,
                        c.cancelled,
                        c.open,
                    )
                ),
            ]
            for c in counts
        ],
        note="`requests`: the teacher's requests in batches (in a dataset's table, that dataset's); "
        "`resubmitted`, those an earlier batch already carried (failed requests sent again, an expired batch's "
        "leftovers). `succeeded` / `errored` are the provider's last counts of the whole batches; `expired`, "
        "`failed`, `cancelled` count batches that ended so (what they had finished is kept), `open` those not "
        "closed yet.",
    )


def _share(part: float, whole: float | None) -> str:
    """`part` as a percentage of `whole`; "-" when there is nothing to share or the whole is unknown."""
    return fmt_pct(part / whole) if whole and part else "-"


def _fmt_skipped(skipped: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason or '?'}" for reason, n in sorted(skipped.items())) or "0"


def write_cost_report(report: CostReport, out_dir: Path) -> tuple[Path, Path]:
    """Write `cost_report.json` and `cost_report.md` into `out_dir`; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "cost_report.json"
    md_path = out_dir / "cost_report.md"
    json_path.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n")
    sections = [to_markdown(t) for s in report.datasets for t in cost_tables(s)]
    sections.append(
        f"Total: {fmt_usd(report.total_usd)} billed, {fmt_usd(report.possibly_usd)} possibly billed. "
        f"Generated {report.generated_at}.\n"
    )
    md_path.write_text(join_markdown("Cost report", sections), encoding="utf-8")
    return json_path, md_path


def print_cost_report(report: CostReport, console: Console) -> None:
    """The cost report as rich tables."""
    for section in report.datasets:
        for table in cost_tables(section):
            console.print(to_rich(table))
    console.print(f"Total: {fmt_usd(report.total_usd)} billed, {fmt_usd(report.possibly_usd)} possibly billed")


def cost_report(out_dir: Path, tasks: Sequence[str] | None = None, console: Console | None = None) -> CostReport:
    """Build the cost report from `out_dir/store.sqlite`, write its files, and print it when given a console.

    Raises FileNotFoundError when the run directory has no store yet.
    """
    db = Path(out_dir) / STORE_FILE
    if not db.is_file():
        raise FileNotFoundError(f"{db}: no run store here; run the teach stage first")
    conn = ledger_connection(db)
    try:
        report = build_cost_report(conn, tasks)
    finally:
        conn.close()
    write_cost_report(report, Path(out_dir))
    if console is not None:
        print_cost_report(report, console)
    return report


def ledger_connection(db: Path) -> sqlite3.Connection:
    """A read-only connection to a run store (safe beside a running writer: WAL readers never block it)."""
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)
