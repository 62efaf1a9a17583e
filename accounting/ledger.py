"""The ledger: what the run store says was bought, failed, reused and saved.

Read-only queries over a run's SQLite store (`store.calls`), for the cost report,
the run report and `--stage report`. Figures follow the store's status semantics:

- tokens and USD count everything the providers billed, whatever the call's status:
  a failed call's answers without usable text, a cancelled or cap-skipped call's
  earlier attempts; `possibly_usd` is the worst case of attempts sent and never
  answered (timeouts, resets, cancellations), which a provider may have billed;
- `cached` rows are answers reused from the store: counted, never priced;
- `skipped` reviews were never sent; they are counted per call slot by reason
  (`decided`, `wrong_answer`, `budget`), from the slot's latest row, so a review
  skipped again by a resumed run is not counted twice.

A USD figure is None ("unknown") as soon as one billed row in it has no price.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict

import msgspec

from store.calls import CallMode
from store.events import StageEnd, StageStart, read_events

STAGES: tuple[str, ...] = ("rationale", "feedback", "review")
# Skips that an option chose to save money; `budget` skips are calls the cap withheld.
SAVING_REASONS: tuple[str, ...] = ("decided", "wrong_answer")
# Gaps between a teacher's calls longer than this are idle time (e.g. between a
# killed run and its resume), not busy time.
_IDLE_GAP_S = 60.0

# A row is billed when it was sent; its USD is unknown when a billed row that
# completed (or reported usage) carries no price.
_BILLED = "status IN ('completed', 'failed')"
# Money, though, can sit on any row whose call sent an attempt: a cancelled call, or
# one the cap skipped after an answer without usable text. Cached rows carry none.
_CHARGED = "status != 'cached'"
_UNPRICED = f"({_CHARGED} AND usd IS NULL AND (status = 'completed' OR input_tokens + output_tokens > 0))"


class StageLedger(msgspec.Struct, kw_only=True):
    """One dataset x teacher x mode x stage: what was sent, failed, reused and skipped.

    `mode`: "batch" for calls answered through a Batch API (billed at batch prices), "sync"
    otherwise; a batch teacher whose requests fell back to its sync lane has rows of both.
    """

    dataset: str
    teacher: str
    stage: str
    mode: CallMode = "sync"
    calls: int = 0
    failed: int = 0
    retries: int = 0
    http_429: int = 0
    cached: int = 0
    skipped: dict[str, int] = {}
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float | None = 0.0
    # Worst case of attempts sent and never answered (may have been billed).
    possibly_usd: float = 0.0
    # Calls whose last answer was billed without usable text, and rows whose usage we estimated.
    unusable: int = 0
    usage_estimated: int = 0
    # Inside output_tokens (and `usd`): thinking; inside input_tokens: cache reads and writes.
    reasoning_tokens: int = 0
    reasoning_usd: float = 0.0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


class Totals(msgspec.Struct, kw_only=True):
    """Sums over several `StageLedger` rows (a dataset, or the whole run)."""

    calls: int = 0
    failed: int = 0
    retries: int = 0
    http_429: int = 0
    cached: int = 0
    skipped: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float | None = 0.0
    possibly_usd: float = 0.0
    unusable: int = 0
    usage_estimated: int = 0
    reasoning_tokens: int = 0
    reasoning_usd: float = 0.0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


class Slot(msgspec.Struct, frozen=True, kw_only=True):
    """A call slot whose latest row left it without an answer: what a rerun still has to send."""

    dataset: str
    sample_id: str
    teacher: str
    stage: str
    target: str
    status: str
    reason: str | None


class Savings(msgspec.Struct, kw_only=True):
    """Reviews the skip options did not send, and their estimated USD (None if unknown)."""

    calls: int = 0
    usd: float | None = 0.0
    by_reason: dict[str, int] = {}


class TeacherUsage(msgspec.Struct, kw_only=True):
    """A teacher's sent calls over its busy time (idle gaps over a minute left out)."""

    calls: int
    requests: int
    input_tokens: int
    output_tokens: int
    busy_s: float

    @property
    def requests_per_min(self) -> float:
        return 60.0 * self.requests / self.busy_s if self.busy_s > 0 else 0.0

    @property
    def tokens_per_min(self) -> float:
        return 60.0 * (self.input_tokens + self.output_tokens) / self.busy_s if self.busy_s > 0 else 0.0


class Series(msgspec.Struct, kw_only=True):
    """Values over time: `t_s` seconds since `start` (unix time), one value per point."""

    start: float
    t_s: list[float]
    values: list[float]


class StageWall(msgspec.Struct, kw_only=True):
    """Wall time of one stage (summed over resumed runs); `finished` False if it never ended."""

    stage: str
    dataset: str | None
    wall_s: float
    finished: bool


def add_usd(a: float | None, b: float | None) -> float | None:
    """Sum of two USD figures, unknown if either is."""
    return None if a is None or b is None else a + b


def datasets(conn: sqlite3.Connection) -> list[str]:
    """Datasets (task names) with any call or decided sample, in order of first appearance."""
    cur = conn.execute(
        "SELECT dataset FROM (SELECT dataset, MIN(finished_at) AS t FROM calls GROUP BY dataset "
        "UNION ALL SELECT dataset, MIN(decided_at) AS t FROM samples GROUP BY dataset) "
        "GROUP BY dataset ORDER BY MIN(t), dataset"
    )
    return [r[0] for r in cur]


def _latest_rows(where: str = "1") -> str:
    """SQL for the latest row of every call slot (dataset, sample, teacher, stage, target).

    SQLite documents that bare columns next to a lone MAX() come from the row holding
    the maximum: three times faster than a ROW_NUMBER() window over a big store.
    """
    return (
        f"SELECT *, MAX(seq) AS latest_seq FROM calls WHERE {where} GROUP BY dataset, sample_id, teacher, stage, target"
    )


def stage_ledger(conn: sqlite3.Connection, dataset: str | None = None) -> list[StageLedger]:
    """Per dataset x teacher x mode x stage figures, ordered by dataset, teacher, mode, then stage order."""
    where, args = ("dataset = ?", (dataset,)) if dataset is not None else ("1", ())
    rows: dict[tuple[str, str, str, str], StageLedger] = {}
    cur = conn.execute(
        "SELECT dataset, teacher, mode, stage, "
        "SUM(status = 'completed'), SUM(status = 'failed'), SUM(retries), SUM(http_429), SUM(status = 'cached'), "
        f"SUM(CASE WHEN {_CHARGED} THEN input_tokens ELSE 0 END), "
        f"SUM(CASE WHEN {_CHARGED} THEN output_tokens ELSE 0 END), "
        f"SUM(CASE WHEN {_CHARGED} THEN COALESCE(usd, 0) ELSE 0 END), SUM({_UNPRICED}), "
        "SUM(possibly_usd), SUM(unusable IS NOT NULL), SUM(usage_estimated), "
        f"SUM(CASE WHEN {_CHARGED} THEN reasoning_tokens ELSE 0 END), "
        f"SUM(CASE WHEN {_CHARGED} THEN reasoning_usd ELSE 0 END), "
        f"SUM(CASE WHEN {_CHARGED} THEN cache_read_tokens ELSE 0 END), "
        f"SUM(CASE WHEN {_CHARGED} THEN cache_write_tokens ELSE 0 END) "
        f"FROM calls WHERE {where} GROUP BY dataset, teacher, mode, stage",
        args,
    )
    for (
        ds,
        teacher,
        mode,
        stage,
        calls,
        failed,
        retries,
        h429,
        cached,
        tin,
        tout,
        usd,
        unpriced,
        possibly,
        unusable,
        estimated,
        reasoning,
        reasoning_usd,
        cache_read,
        cache_write,
    ) in cur:
        rows[(ds, teacher, mode, stage)] = StageLedger(
            dataset=ds,
            teacher=teacher,
            stage=stage,
            mode=mode,
            calls=calls,
            failed=failed,
            retries=retries,
            http_429=h429,
            cached=cached,
            input_tokens=tin,
            output_tokens=tout,
            usd=None if unpriced else usd,
            possibly_usd=possibly,
            unusable=unusable,
            usage_estimated=estimated,
            reasoning_tokens=reasoning,
            reasoning_usd=reasoning_usd,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
        )
    cur = conn.execute(
        f"SELECT dataset, teacher, mode, stage, COALESCE(error, ''), COUNT(*) FROM ({_latest_rows(where)}) "
        "WHERE status = 'skipped' GROUP BY dataset, teacher, mode, stage, error",
        args,
    )
    for ds, teacher, mode, stage, reason, n in cur:
        row = rows[(ds, teacher, mode, stage)]
        row.skipped = {**row.skipped, reason: n}
    order = {s: i for i, s in enumerate(STAGES)}
    return sorted(
        rows.values(), key=lambda r: (r.dataset, r.teacher, r.mode != "sync", order.get(r.stage, len(order)), r.stage)
    )


def totals(rows: list[StageLedger]) -> Totals:
    """The sums of `rows`; USD unknown if any row's is."""
    out = Totals()
    for r in rows:
        out.calls += r.calls
        out.failed += r.failed
        out.retries += r.retries
        out.http_429 += r.http_429
        out.cached += r.cached
        out.skipped += sum(r.skipped.values())
        out.input_tokens += r.input_tokens
        out.output_tokens += r.output_tokens
        out.usd = add_usd(out.usd, r.usd)
        out.possibly_usd += r.possibly_usd
        out.unusable += r.unusable
        out.usage_estimated += r.usage_estimated
        out.reasoning_tokens += r.reasoning_tokens
        out.reasoning_usd += r.reasoning_usd
        out.cache_read_tokens += r.cache_read_tokens
        out.cache_write_tokens += r.cache_write_tokens
    return out


def committed_usd(conn: sqlite3.Connection) -> tuple[float, float]:
    """(spent, possibly billed) USD over the whole store: what a resumed run's cap starts from."""
    spent, possibly = conn.execute(
        f"SELECT COALESCE(SUM(usd), 0), COALESCE(SUM(possibly_usd), 0) FROM calls WHERE {_CHARGED}"
    ).fetchone()
    return float(spent), float(possibly)


def missing_slots(conn: sqlite3.Connection, dataset: str | None = None) -> list[Slot]:
    """Call slots whose latest row is failed or skipped by the spending cap, and that never completed.

    These are the calls a rerun sends; a run that ends with any is not done.
    """
    where, args = ("dataset = ?", (dataset,)) if dataset is not None else ("1", ())
    cur = conn.execute(
        f"SELECT dataset, sample_id, teacher, stage, target, status, error FROM ({_latest_rows(where)}) AS l "
        "WHERE (status = 'failed' OR (status = 'skipped' AND error = 'budget')) AND NOT EXISTS ("
        "SELECT 1 FROM calls c WHERE c.dataset = l.dataset AND c.sample_id = l.sample_id AND c.teacher = l.teacher "
        "AND c.stage = l.stage AND c.target = l.target AND c.status IN ('completed', 'cached')) "
        "ORDER BY dataset, sample_id, teacher, stage, target",
        args,
    )
    return [
        Slot(dataset=d, sample_id=s, teacher=t, stage=st, target=tg, status=status, reason=err)
        for d, s, t, st, tg, status, err in cur
    ]


def savings(conn: sqlite3.Connection, dataset: str) -> Savings:
    """Reviews not sent because of `skip_decided` / `skip_wrong_answer`, with their estimated USD.

    Each skipped review is priced at its reviewer's mean completed-review cost in
    this dataset (across datasets when it has none here); unknown if neither exists.
    """
    out = Savings()
    cur = conn.execute(
        f"SELECT teacher, error, COUNT(*) FROM ({_latest_rows('dataset = ?')}) "
        f"WHERE status = 'skipped' AND error IN ({', '.join('?' * len(SAVING_REASONS))}) GROUP BY teacher, error",
        (dataset, *SAVING_REASONS),
    )
    for teacher, reason, n in cur.fetchall():
        out.calls += n
        out.by_reason[reason] = out.by_reason.get(reason, 0) + n
        out.usd = add_usd(out.usd, _mean_review_usd(conn, dataset, teacher, n))
    return out


def _mean_review_usd(conn: sqlite3.Connection, dataset: str, teacher: str, n: int) -> float | None:
    for where, args in (("dataset = ? AND teacher = ?", (dataset, teacher)), ("teacher = ?", (teacher,))):
        count, usd, unpriced = conn.execute(
            f"SELECT COUNT(*), SUM(usd), SUM(usd IS NULL) FROM calls "
            f"WHERE {where} AND stage = 'review' AND status = 'completed'",
            args,
        ).fetchone()
        if count:
            return None if unpriced else n * usd / count
    return None


def tokens_per_sample(conn: sqlite3.Connection, dataset: str) -> dict[str, tuple[float, float]]:
    """Per teacher, mean output tokens per sample without and with its review calls (the paper's Table 5).

    "Without" = the teacher's rationale + feedback output tokens; "with" adds the
    reviews it wrote. Both are divided by the samples it wrote a rationale or
    feedback for; only completed (billed) calls count.
    """
    cur = conn.execute(
        "SELECT teacher, "
        "COUNT(DISTINCT CASE WHEN stage IN ('rationale', 'feedback') THEN sample_id END), "
        "SUM(CASE WHEN stage IN ('rationale', 'feedback') THEN output_tokens ELSE 0 END), "
        "SUM(CASE WHEN stage = 'review' THEN output_tokens ELSE 0 END) "
        "FROM calls WHERE dataset = ? AND status = 'completed' GROUP BY teacher ORDER BY teacher",
        (dataset,),
    )
    return {t: (own / n, (own + review) / n) for t, n, own, review in cur if n}


def teacher_usage(conn: sqlite3.Connection) -> dict[str, TeacherUsage]:
    """Per teacher: calls, requests (attempts) and tokens sent, over the time it was busy.

    Busy time is the union of its calls' [start, finish] spans with gaps shorter than
    a minute bridged, so a resumed run's pause does not dilute the achieved rate.
    """
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    cur = conn.execute(
        f"SELECT teacher, finished_at - latency_s, finished_at, attempts, input_tokens, output_tokens "
        f"FROM calls WHERE {_BILLED} ORDER BY teacher, finished_at - latency_s"
    )
    for teacher, start, end, attempts, tin, tout in cur:
        spans[teacher].append((start, end))
        s = sums[teacher]
        s[0] += 1
        s[1] += max(attempts, 1)
        s[2] += tin
        s[3] += tout
    return {
        t: TeacherUsage(calls=s[0], requests=s[1], input_tokens=s[2], output_tokens=s[3], busy_s=_busy_s(spans[t]))
        for t, s in sums.items()
    }


def _busy_s(spans: list[tuple[float, float]]) -> float:
    """Length of the union of sorted spans, bridging gaps under `_IDLE_GAP_S`."""
    total = 0.0
    lo, hi = spans[0]
    for start, end in spans[1:]:
        if start - hi > _IDLE_GAP_S:
            total += hi - lo
            lo = start
        hi = max(hi, end)
    return total + hi - lo


def run_start(conn: sqlite3.Connection) -> float | None:
    """Unix time of the first call's start or first event, whichever is earlier."""
    calls, events = conn.execute(
        "SELECT (SELECT MIN(finished_at - latency_s) FROM calls), (SELECT MIN(at) FROM events)"
    ).fetchone()
    known = [t for t in (calls, events) if t is not None]
    return min(known) if known else None


def call_rate(conn: sqlite3.Connection, *, max_points: int = 120) -> dict[str, Series]:
    """Sent calls per second per teacher over time, bucketed by finish time.

    The bucket width is chosen so the run spans at most `max_points` buckets (at
    least one second). All series share the same start.
    """
    start = run_start(conn)
    end = conn.execute(f"SELECT MAX(finished_at) FROM calls WHERE {_BILLED}").fetchone()[0]
    if start is None or end is None:
        return {}
    bucket_s = max(1.0, (end - start) / max_points)
    n = int((end - start) // bucket_s) + 1
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * n)
    cur = conn.execute(
        f"SELECT teacher, CAST((finished_at - ?) / ? AS INTEGER), COUNT(*) FROM calls WHERE {_BILLED} GROUP BY 1, 2",
        (start, bucket_s),
    )
    for teacher, i, c in cur:
        counts[teacher][min(max(i, 0), n - 1)] += c
    t_s = [(i + 0.5) * bucket_s for i in range(n)]
    return {t: Series(start=start, t_s=t_s, values=[c / bucket_s for c in v]) for t, v in sorted(counts.items())}


def cumulative_usd(conn: sqlite3.Connection) -> dict[str, Series]:
    """Cumulative USD spent per dataset over time (priced rows only; see `stage_ledger` for unknowns)."""
    start = run_start(conn)
    if start is None:
        return {}
    series: dict[str, Series] = {}
    cur = conn.execute(
        f"SELECT dataset, finished_at, usd FROM calls WHERE {_CHARGED} AND usd IS NOT NULL ORDER BY dataset, seq"
    )
    for ds, at, usd in cur:
        s = series.setdefault(ds, Series(start=start, t_s=[], values=[]))
        s.t_s.append(at - start)
        s.values.append((s.values[-1] if s.values else 0.0) + usd)
    return series


def stage_walls(conn: sqlite3.Connection) -> list[StageWall]:
    """Wall time per (stage, dataset) from `stage_start` / `stage_end` events.

    Each start pairs with the next end of the same stage and dataset; a start with
    no end (a killed run) counts until the next start of it or the store's last
    record, and marks the stage unfinished.
    """
    last = conn.execute(
        "SELECT MAX(t) FROM (SELECT MAX(at) AS t FROM events UNION ALL SELECT MAX(finished_at) FROM calls)"
    ).fetchone()[0]
    marks: list[tuple[float, int, StageStart | StageEnd]] = [(at, 0, m) for at, m in read_events(conn, StageStart)]
    marks += [(at, 1, m) for at, m in read_events(conn, StageEnd)]
    marks.sort(key=lambda m: (m[0], m[1]))
    walls: dict[tuple[str, str | None], StageWall] = {}
    open_at: dict[tuple[str, str | None], float] = {}
    for at, is_end, mark in marks:
        key = (mark.stage, mark.dataset)
        wall = walls.setdefault(key, StageWall(stage=key[0], dataset=key[1], wall_s=0.0, finished=True))
        if key in open_at:
            wall.wall_s += at - open_at.pop(key)
            wall.finished = bool(is_end)
        if not is_end:
            open_at[key] = at
    for key, at in open_at.items():
        walls[key].wall_s += max(0.0, (last or at) - at)
        walls[key].finished = False
    return list(walls.values())
