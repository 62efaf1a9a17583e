"""The batch lane against an in-memory BatchApi: windows and splits, resubmission, fallback, expiry, resume, the cap,
and a mixed committee whose sync teachers keep streaming while a batch is out."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path

import anyio
import msgspec
import pytest

from core.batch import BatchItem, BatchLimits, BatchOutcome, BatchState, BatchStatus
from core.calls import NO_DETAIL, ChatRequest, ChatResult, Message, UsageDetail
from core.config import ReviewSection, TeacherSection
from core.errors import Permanent
from core.records import Mistake
from engine.batch_lane import BatchLane
from engine.budget import Budget
from engine.lane import Lane, LaneLimits
from engine.scheduler import Committee, TeachCounters, teach_dataset
from engine.teacher import Answer, Teacher
from store.batches import BatchPlanned, BatchSubmitted, batch_records, record_batch_event
from store.calls import CallRow, CallSlot, Store, request_key

pytestmark = pytest.mark.anyio

LIMITS = BatchLimits(max_requests=100, max_bytes=1_000_000, max_in_flight=4)


def _section(name: str = "b", **keys) -> TeacherSection:
    base = {"name": name, "provider": "openai", "model": "m", "max_tokens": 100, "mode": "batch"}
    base |= {"batch_window_s": 0.01, "batch_poll_s": 0.001}
    return msgspec.convert(base | keys, TeacherSection)


def _answer(request: ChatRequest) -> ChatResult:
    return ChatResult(
        text=f"re: {request.messages[-1].content}", input_tokens=10, output_tokens=5, finish_reason="stop", latency_s=0
    )


class _Batch:
    def __init__(self, items: Sequence[BatchItem], tag: str):
        self.items = list(items)
        self.tag = tag
        self.state: BatchState = "running"
        self.error: str | None = None
        # custom_ids that expired (no result) when the batch expired.
        self.unfinished: set[str] = set()


class FakeBatchApi:
    """The provider's side of batches, in memory. A batch completes on its first poll unless `hold` is set,
    then when `finish` is called. `fail_times[custom_id]`: how many of its attempts error (retryably)."""

    def __init__(self, limits: BatchLimits = LIMITS, *, hold: bool = False, fail_times: dict[str, int] | None = None):
        self.limits = limits
        self.hold = hold
        self.fail_times = dict(fail_times or {})
        self.batches: dict[str, _Batch] = {}
        self.submitted = anyio.Event()
        self.billed: list[str] = []

    def item_bytes(self, item: BatchItem) -> int:
        return len(msgspec.json.encode(item))

    async def submit(self, items: Sequence[BatchItem], *, tag: str) -> str:
        batch_id = f"batch_{len(self.batches)}"
        self.batches[batch_id] = _Batch(items, tag)
        self.submitted.set()
        self.submitted = anyio.Event()
        return batch_id

    async def find(
        self,
        tag: str,
        *,
        custom_ids: frozenset[str] = frozenset(),
        since: float | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> str | None:
        return next((i for i, b in self.batches.items() if b.tag == tag and i not in exclude), None)

    async def status(self, batch_id: str) -> BatchStatus:
        batch = self.batches[batch_id]
        if batch.state == "running" and not self.hold:
            batch.state = "completed"
        return BatchStatus(batch_id=batch_id, state=batch.state, total=len(batch.items), error=batch.error)

    def finish(self, batch_id: str, state: BatchState = "completed", *, unfinished: Iterable[str] = ()) -> None:
        self.batches[batch_id].state = state
        self.batches[batch_id].unfinished = set(unfinished)

    async def results(self, batch_id: str, custom_ids: frozenset[str]) -> AsyncIterator[BatchOutcome]:
        for item in self.batches[batch_id].items:
            assert item.custom_id in custom_ids
            if item.custom_id in self.batches[batch_id].unfinished:
                yield BatchOutcome(custom_id=item.custom_id, error="expired", retryable=True)
            elif self.fail_times.get(item.custom_id, 0) > 0:
                self.fail_times[item.custom_id] -= 1
                yield BatchOutcome(custom_id=item.custom_id, error="server error", retryable=True, http_status=500)
            else:
                self.billed.append(item.custom_id)
                yield BatchOutcome(custom_id=item.custom_id, result=_answer(item.request))

    async def cancel(self, batch_id: str) -> None:
        raise AssertionError("the engine never cancels a batch")

    def sizes(self) -> list[int]:
        return [len(b.items) for b in self.batches.values()]


class SyncClient:
    """A sync provider: answers at once, or holds every request until `hold` is set."""

    def __init__(self, hold: anyio.Event | None = None):
        self.requests: list[ChatRequest] = []
        self.hold = hold
        self.arrived = anyio.Event()

    async def complete(self, request: ChatRequest, *, timeout_s: float) -> ChatResult:
        self.requests.append(request)
        self.arrived.set()
        self.arrived = anyio.Event()
        if self.hold is not None:
            await self.hold.wait()
        return _answer(request)


def _cost(input_tokens: int, output_tokens: int, detail: UsageDetail = NO_DETAIL) -> float:
    return (input_tokens + 2 * output_tokens) / 1e6


def _half(input_tokens: int, output_tokens: int, detail: UsageDetail = NO_DETAIL) -> float:
    return _cost(input_tokens, output_tokens, detail) / 2


def _teacher(section: TeacherSection, store: Store, budget: Budget, api: FakeBatchApi | None, sync: SyncClient):
    lane = Lane(section.name, sync, LaneLimits(backoff_base_s=0.001, backoff_cap_s=0.002))
    batch = None
    if api is not None:
        batch = BatchLane(section, api, store=store, budget=budget, cost_usd=_half)
    return Teacher(section, lane, store=store, budget=budget, cost_usd=_cost, estimate_tokens=len, batch=batch)


def _question(i: int) -> tuple[Message, ...]:
    return (Message("user", f"question {i}"),)


async def _ask_all(teacher: Teacher, n: int, *, start: int = 0) -> dict[int, Answer]:
    answers: dict[int, Answer] = {}

    async def ask(i: int) -> None:
        answers[i] = await teacher.ask(_question(i), dataset="d", sample_id=str(i), stage="rationale")

    async with anyio.create_task_group() as tg:
        for i in range(start, start + n):
            tg.start_soon(ask, i)
    return answers


async def _with_lane(teacher: Teacher, body) -> None:
    assert teacher.batch is not None
    async with anyio.create_task_group() as tg:
        await tg.start(teacher.batch.run)
        await body()
        tg.cancel_scope.cancel()


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT sample_id, status, mode, attempts, usd, error FROM calls ORDER BY seq").fetchall()


def _key(teacher: Teacher, i: int) -> str:
    return request_key("openai", teacher.request(_question(i)))


async def test_requests_are_split_by_count_and_bytes_and_a_full_batch_does_not_wait(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    api = FakeBatchApi()
    # A window no test waits out: every batch here goes because it is full.
    section = _section(batch_max_requests=2, batch_window_s=3600)
    async with Store.open(db) as store:
        teacher = _teacher(section, store, Budget(None), api, SyncClient())
        answers: dict[int, Answer] = {}

        async def body() -> None:
            answers.update(await _ask_all(teacher, 4))

        await _with_lane(teacher, body)
    assert api.sizes() == [2, 2]
    assert answers == {i: Answer(f"re: question {i}") for i in range(4)}
    rows = _rows(db)
    assert len(rows) == 4 and {r[1:4] for r in rows} == {("completed", "batch", 1)}
    # Billed at the batch rates (half of the sync cost function's 20e-6).
    assert [r[4] for r in rows] == [pytest.approx(10e-6)] * 4

    # Bytes: the provider's byte limit holds two of these requests, not three.
    one = api.item_bytes(BatchItem(custom_id=_key(teacher, 10), request=teacher.request(_question(10))))
    api = FakeBatchApi(BatchLimits(max_requests=100, max_bytes=2 * one + 1, max_in_flight=4))
    async with Store.open(tmp_path / "bytes.sqlite") as store:
        teacher = _teacher(_section(batch_window_s=0.01), store, Budget(None), api, SyncClient())

        async def three() -> None:
            await _ask_all(teacher, 3, start=10)

        await _with_lane(teacher, three)
    assert sorted(api.sizes()) == [1, 2]


async def test_a_partial_batch_goes_when_its_window_ends_and_batches_are_recorded(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    api = FakeBatchApi()
    async with Store.open(db) as store:
        teacher = _teacher(_section(batch_max_requests=50), store, Budget(None), api, SyncClient())

        async def body() -> None:
            await _ask_all(teacher, 3)

        await _with_lane(teacher, body)
        records = batch_records(store.connection, "b")
    assert api.sizes() == [3]
    assert [(r.batch_id, r.state, r.closed, len(r.slots)) for r in records] == [("batch_0", "completed", True, 3)]
    assert records[0].tag == api.batches["batch_0"].tag


async def test_failed_requests_go_into_a_later_batch_then_fail_naming_teacher_and_batch(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    async with Store.open(db) as store:
        teacher = _teacher(_section(max_attempts=2), store, Budget(None), None, SyncClient())
        flaky, broken = _key(teacher, 0), _key(teacher, 1)
        api = FakeBatchApi(fail_times={flaky: 1, broken: 5})
        teacher = _teacher(_section(max_attempts=2), store, Budget(None), api, SyncClient())
        answers: dict[int, Answer] = {}

        async def body() -> None:
            answers.update(await _ask_all(teacher, 3))

        await _with_lane(teacher, body)
    assert api.sizes() == [3, 2]
    assert answers[0] == Answer("re: question 0") and answers[2] == Answer("re: question 2")
    assert answers[1].text is None
    assert answers[1].error == "teacher 'b': batch batch_1: server error, after 2 batches"
    by_sample = {r[0]: r for r in _rows(db)}
    assert by_sample["0"][1:4] == ("completed", "batch", 2)
    assert by_sample["1"][1:5] == ("failed", "batch", 2, 0.0)
    assert api.billed.count(flaky) == 1 and broken not in api.billed


async def test_fallback_sync_sends_what_batches_kept_failing_through_the_sync_lane(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    sync = SyncClient()
    async with Store.open(db) as store:
        section = _section(max_attempts=1, fallback="sync")
        probe = _teacher(section, store, Budget(None), None, sync)
        api = FakeBatchApi(fail_times={_key(probe, 0): 9})
        teacher = _teacher(section, store, Budget(None), api, sync)

        async def body() -> None:
            assert await _ask_all(teacher, 2) == {0: Answer("re: question 0"), 1: Answer("re: question 1")}

        await _with_lane(teacher, body)
    assert [r.messages[-1].content for r in sync.requests] == ["question 0"]
    assert sorted(r[:3] for r in _rows(db)) == [("0", "completed", "sync"), ("1", "completed", "batch")]


async def test_an_expired_batch_resubmits_its_unfinished_requests_and_says_so(tmp_path: Path, caplog) -> None:
    db = tmp_path / "store.sqlite"
    api = FakeBatchApi(hold=True)
    async with Store.open(db) as store:
        teacher = _teacher(_section(), store, Budget(None), api, SyncClient())
        answers: dict[int, Answer] = {}

        async def body() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: _collect(answers, teacher))
                await api.submitted.wait()
                api.hold = False
                api.finish("batch_0", "expired", unfinished={_key(teacher, 1)})

        with caplog.at_level(logging.WARNING, logger="engine.batch_lane"):
            await _with_lane(teacher, body)
        records = batch_records(store.connection, "b")
    assert answers == {i: Answer(f"re: question {i}") for i in range(2)}
    assert api.sizes() == [2, 1]
    assert [(r.state, r.closed) for r in records] == [("expired", True), ("completed", True)]
    assert "teacher 'b': batch batch_0: expired" in caplog.text


async def _collect(answers: dict[int, Answer], teacher: Teacher) -> None:
    answers.update(await _ask_all(teacher, 2))


async def test_resume_finds_a_created_batch_by_tag_forgets_one_never_created_and_joins_asks(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    api = FakeBatchApi(hold=True)
    section = _section()
    async with Store.open(db) as store:
        teacher = _teacher(section, store, Budget(None), api, SyncClient())
        slots = [
            CallSlot(key=_key(teacher, i), dataset="d", sample_id=str(i), teacher="b", stage="rationale")
            for i in range(3)
        ]
        items = [BatchItem(custom_id=s.key, request=teacher.request(_question(i))) for i, s in enumerate(slots)]
        # A killed run: batch A was created at the provider after its plan was committed, its id never recorded;
        # batch B was planned and never created; batch C was created and recorded.
        await record_batch_event(
            store, "b", BatchPlanned(local_id="A", teacher="b", provider="openai", tag="tag-A", slots=(slots[0],))
        )
        await record_batch_event(
            store, "b", BatchPlanned(local_id="B", teacher="b", provider="openai", tag="tag-B", slots=(slots[1],))
        )
        await record_batch_event(
            store, "b", BatchPlanned(local_id="C", teacher="b", provider="openai", tag="tag-C", slots=(slots[2],))
        )
        await api.submit(items[:1], tag="tag-A")
        await api.submit(items[2:], tag="tag-C")
        await record_batch_event(store, "b", BatchSubmitted(local_id="C", batch_id="batch_1"))

    async with Store.open(db) as store:
        teacher = _teacher(section, store, Budget(None), api, SyncClient())
        answers: dict[int, Answer] = {}

        async def body() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: _collect_one(answers, teacher, 0))
                tg.start_soon(lambda: _collect_one(answers, teacher, 1))
                await api.submitted.wait()
                # Only the batch never created is sent again; the ask for A's request waits on A.
                assert api.sizes() == [1, 1, 1] and api.batches["batch_2"].items[0].custom_id == slots[1].key
                api.hold = False

        await _with_lane(teacher, body)
        records = {r.local_id: r for r in batch_records(store.connection, "b")}
    assert answers == {0: Answer("re: question 0"), 1: Answer("re: question 1")}
    assert (records["A"].batch_id, records["A"].state, records["A"].closed) == ("batch_0", "completed", True)
    assert (records["B"].batch_id, records["B"].closed, records["B"].error) == (None, True, "never created")
    assert records["B"].state == "planned"
    # Nobody asked for C's request in this run: its paid answer is committed all the same.
    assert records["C"].closed
    assert sorted(r[:3] for r in _rows(db)) == [(str(i), "completed", "batch") for i in range(3)]
    assert sorted(api.billed) == sorted(s.key for s in slots)

    # A rerun of the finished run sends nothing.
    async with Store.open(db) as store:
        teacher = _teacher(section, store, Budget(None), api, SyncClient())

        async def again() -> None:
            assert (await _ask_all(teacher, 3))[2] == Answer("re: question 2")

        await _with_lane(teacher, again)
    assert api.sizes() == [1, 1, 1]


async def _collect_one(answers: dict[int, Answer], teacher: Teacher, i: int) -> None:
    answers[i] = await teacher.ask(_question(i), dataset="d", sample_id=str(i), stage="rationale")


async def test_the_cap_holds_requests_back_until_reservations_settle_and_skips_what_never_fits(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    api = FakeBatchApi()
    async with Store.open(db) as store:
        probe = _teacher(_section(), store, Budget(None), None, SyncClient())
        worst = probe.worst_case_usd(probe.request(_question(0)), _half)
        # Two worst cases fit at once; the third waits for the first batch to settle far below its worst case.
        budget = Budget(2.5 * worst)
        teacher = _teacher(_section(), store, budget, api, SyncClient())

        async def body() -> None:
            assert all(a.text for a in (await _ask_all(teacher, 3)).values())

        await _with_lane(teacher, body)
        assert api.sizes() == [2, 1]
        assert budget.spent_usd == pytest.approx(3 * 10e-6) and budget.reserved_usd == 0.0

        tight = Budget(worst / 2)
        teacher = _teacher(_section(), store, tight, api, SyncClient())

        async def refused() -> None:
            answer = await teacher.ask(_question(9), dataset="d", sample_id="9", stage="rationale")
            assert answer == Answer(None, error="spending cap reached", skipped=True)

        await _with_lane(teacher, refused)
    assert tight.reached and api.sizes() == [2, 1]
    assert _rows(db)[-1][:3] == ("9", "skipped", "sync")


async def test_a_batch_the_provider_cannot_create_fails_its_requests_in_one_line(tmp_path: Path) -> None:
    class Refusing(FakeBatchApi):
        async def submit(self, items: Sequence[BatchItem], *, tag: str) -> str:
            raise Permanent("HTTP 400: batches are not enabled for this project")

    db = tmp_path / "store.sqlite"
    async with Store.open(db) as store:
        teacher = _teacher(_section(max_attempts=1), store, Budget(None), Refusing(), SyncClient())

        async def body() -> None:
            answer = await teacher.ask(_question(0), dataset="d", sample_id="0", stage="rationale")
            assert answer.text is None and answer.error is not None
            assert answer.error.startswith("teacher 'b': batch ") and "batches are not enabled" in answer.error
            assert "\n" not in answer.error

        await _with_lane(teacher, body)
        (record,) = batch_records(store.connection, "b")
    assert record.closed and record.state == "failed" and record.batch_id is None


def _mistake(i: int) -> Mistake:
    return Mistake(
        id=str(i),
        task="gsm8k",
        question=f"What is {i} + {i}?",
        gold=str(2 * i),
        student_answer="no idea",
        student_final_answer=None,
    )


async def test_sync_teachers_keep_streaming_while_samples_wait_on_a_batch(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    api = FakeBatchApi(hold=True)
    n = 4
    async with Store.open(db) as store:
        budget = Budget(None)
        sync_a, sync_b = SyncClient(), SyncClient()
        teachers = [
            # Its own model, as config validation requires: the same model would ask the same requests as s1, and
            # the store would answer them from s1's.
            _teacher(_section("b", model="mb"), store, budget, api, SyncClient()),
            _teacher(_section("s1", mode="sync"), store, budget, None, sync_a),
            _teacher(_section("s2", mode="sync"), store, budget, None, sync_b),
        ]
        committee = Committee(teachers, ReviewSection(), store)
        counters = TeachCounters()
        decided: list[str] = []

        async def on_decided(sample) -> None:
            decided.append(sample.id)

        send, recv = anyio.create_memory_object_stream[Mistake](max_buffer_size=0)

        async def feed() -> None:
            async with send:
                for i in range(n):
                    await send.send(_mistake(i))

        async def body() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(feed)
                tg.start_soon(
                    lambda: teach_dataset(
                        committee,
                        recv,
                        # One sample at a time: without parking, the first sample's batch wait would stop everything.
                        limiter=anyio.CapacityLimiter(1),
                        done_ids=frozenset(),
                        on_decided=on_decided,
                        counters=counters,
                        budget_reached=lambda: False,
                    )
                )
                # Every sample's sync rationale, feedback and reviews of sync rationales (each by the other sync
                # teacher; the batch teacher's reviews wait in its queue) while the batch is held.
                # A deadline, not a delay: without parking this never happens.
                with anyio.fail_after(20):
                    while len(sync_a.requests) < 3 * n:
                        await sync_a.arrived.wait()
                assert decided == []
                api.hold = False

        await _with_lane(teachers[0], body)
    assert sorted(decided) == [str(i) for i in range(n)] and counters.incomplete == 0
    # The batch teacher's rationale and feedback per sample, and its reviews of the sync rationales: s1 and s2 were
    # asked the same and answered alike, so its two reviews per sample are one request, joined.
    assert sum(api.sizes()) == 3 * n


async def test_unreadable_results_keep_what_was_read_and_fail_the_rest_without_paying_again(tmp_path: Path) -> None:
    class Garbled(FakeBatchApi):
        async def results(self, batch_id: str, custom_ids: frozenset[str]) -> AsyncIterator[BatchOutcome]:
            async for outcome in super().results(batch_id, custom_ids):
                yield outcome
                raise Permanent(f"teacher 'b': batch {batch_id}: output line 2 is not JSON")

    db = tmp_path / "store.sqlite"
    api = Garbled()
    async with Store.open(db) as store:
        teacher = _teacher(_section(batch_max_requests=2), store, Budget(None), api, SyncClient())
        answers: dict[int, Answer] = {}

        async def body() -> None:
            answers.update(await _ask_all(teacher, 2))

        await _with_lane(teacher, body)
        (record,) = batch_records(store.connection, "b")
    assert api.sizes() == [2]
    read, lost = sorted(answers.values(), key=lambda a: a.text is None)
    assert read.text is not None and lost.text is None and lost.error is not None
    assert lost.error.startswith("teacher 'b': batch batch_0: results unreadable: ") and "line 2" in lost.error
    assert record.closed and record.error is not None and "line 2" in record.error
    assert sorted(r[1] for r in _rows(db)) == ["completed", "failed"]


async def test_an_answer_without_usable_text_is_billed_and_recorded_as_unusable(tmp_path: Path) -> None:
    class Truncating(FakeBatchApi):
        async def results(self, batch_id: str, custom_ids: frozenset[str]) -> AsyncIterator[BatchOutcome]:
            for item in self.batches[batch_id].items:
                yield BatchOutcome(
                    custom_id=item.custom_id,
                    error="max_tokens reached before any text",
                    unusable="truncated",
                    input_tokens=10,
                    output_tokens=100,
                )

    db = tmp_path / "store.sqlite"
    async with Store.open(db) as store:
        budget = Budget(None)
        teacher = _teacher(_section(), store, budget, Truncating(), SyncClient())

        async def body() -> None:
            answer = await teacher.ask(_question(0), dataset="d", sample_id="0", stage="rationale")
            assert answer.text is None and answer.error is not None and "max_tokens" in answer.error

        await _with_lane(teacher, body)
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT status, unusable, input_tokens, output_tokens, usd FROM calls").fetchone()
    # Billed at the batch rates: (10 + 2 * 100) / 2 micro-dollars.
    assert row == ("failed", "truncated", 10, 100, pytest.approx(105e-6))
    assert budget.spent_usd == pytest.approx(105e-6)


async def test_a_stopped_run_leaves_its_batch_at_the_provider_and_the_next_run_collects_it(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    api = FakeBatchApi(hold=True)
    async with Store.open(db) as store:
        teacher = _teacher(_section(), store, Budget(None), api, SyncClient())
        assert teacher.batch is not None
        async with anyio.create_task_group() as tg:
            await tg.start(teacher.batch.run)
            tg.start_soon(_collect_one, {}, teacher, 0)
            await api.submitted.wait()
            # Ctrl-C while the batch runs: FakeBatchApi.cancel fails the test if the engine cancels it.
            tg.cancel_scope.cancel()
        (record,) = batch_records(store.connection, "b")
    assert (record.batch_id, record.closed) == ("batch_0", False)
    assert _rows(db) == []

    api.hold = False
    async with Store.open(db) as store:
        teacher = _teacher(_section(), store, Budget(None), api, SyncClient())
        answers: dict[int, Answer] = {}

        async def body() -> None:
            await _collect_one(answers, teacher, 0)

        await _with_lane(teacher, body)
        (record,) = batch_records(store.connection, "b")
    assert answers == {0: Answer("re: question 0")} and api.sizes() == [1] and record.closed
    assert [r[:3] for r in _rows(db)] == [("0", "completed", "batch")]


class _NoBatchApi(FakeBatchApi):
    """A host that serves chat completions but has no Batch API: every create is a 404, look-ups must not happen."""

    def __init__(self) -> None:
        # One batch at a time: the requests after the first batch are still queued when it is refused.
        super().__init__(BatchLimits(max_requests=100, max_bytes=1_000_000, max_in_flight=1))
        self.creates = 0

    async def submit(self, items: Sequence[BatchItem], *, tag: str) -> str:
        self.creates += 1
        raise Permanent(f"teacher 'b': batch {tag!r}: HTTP 404: not found", http_status=404)

    async def find(self, tag: str, **_) -> str | None:
        raise AssertionError("a create the provider answered with an error made nothing to look for")


@pytest.mark.parametrize("fallback", ["none", "sync"])
async def test_a_host_without_a_batch_api_fails_every_request_at_once_in_one_line(tmp_path: Path, fallback) -> None:
    db = tmp_path / "store.sqlite"
    api, sync = _NoBatchApi(), SyncClient()
    async with Store.open(db) as store:
        # One request per batch and many attempts: without the stop, each request would make six 404s.
        teacher = _teacher(_section(batch_max_requests=1, fallback=fallback), store, Budget(None), api, sync)
        answers: dict[int, Answer] = {}

        async def body() -> None:
            answers.update(await _ask_all(teacher, 3))

        await _with_lane(teacher, body)
        records = batch_records(store.connection, "b")
    assert api.creates == 1
    assert [(r.closed, r.state, r.batch_id) for r in records] == [(True, "failed", None)]
    if fallback == "sync":
        assert answers == {i: Answer(f"re: question {i}") for i in range(3)} and len(sync.requests) == 3
        return
    errors = {a.error for a in answers.values()}
    assert len(errors) == 1 and all(a.text is None for a in answers.values())
    (error,) = errors
    assert error is not None and "\n" not in error
    assert error.startswith(f"teacher 'b': batch {records[0].local_id}: not created: ") and "HTTP 404" in error
    assert error.endswith("set mode = 'sync' for this teacher")


async def test_a_planned_batch_that_cannot_be_looked_up_holds_its_requests_and_the_run_goes_on(tmp_path: Path) -> None:
    class Unreachable(FakeBatchApi):
        async def find(self, tag: str, **_) -> str | None:
            raise Permanent(f"teacher 'b': finding batch {tag!r}: HTTP 404: not found", http_status=404)

    db = tmp_path / "store.sqlite"
    api = Unreachable()
    async with Store.open(db) as store:
        teacher = _teacher(_section(), store, Budget(None), api, SyncClient())
        slot = CallSlot(key=_key(teacher, 0), dataset="d", sample_id="0", teacher="b", stage="rationale")
        await record_batch_event(
            store, "b", BatchPlanned(local_id="A", teacher="b", provider="openai", tag="tag-A", slots=(slot,))
        )
        answers: dict[int, Answer] = {}

        async def body() -> None:
            answers.update(await _ask_all(teacher, 2))

        await _with_lane(teacher, body)
        records = {r.local_id: r for r in batch_records(store.connection, "b")}
    # The request that may be in batch A is not sent again; the other one is.
    assert answers[1] == Answer("re: question 1") and answers[0].text is None
    assert answers[0].error is not None and "cannot look up batch 'tag-A'" in answers[0].error
    assert [len(b.items) for b in api.batches.values()] == [1] and api.batches["batch_0"].items[0].custom_id != slot.key
    assert not records["A"].closed and records["A"].batch_id is None


async def test_an_unreadable_result_is_booked_as_possibly_billed_at_its_worst_case(tmp_path: Path) -> None:
    class Garbled(FakeBatchApi):
        async def results(self, batch_id: str, custom_ids: frozenset[str]) -> AsyncIterator[BatchOutcome]:
            raise Permanent(f"teacher 'b': batch {batch_id}: line 1 of the results is not a result")
            yield  # pragma: no cover

    db = tmp_path / "store.sqlite"
    async with Store.open(db) as store:
        budget = Budget(1.0)
        teacher = _teacher(_section(), store, budget, Garbled(), SyncClient())
        worst = teacher.worst_case_usd(teacher.request(_question(0)), _half)

        async def body() -> None:
            assert (await _collect_one({}, teacher, 0)) is None

        await _with_lane(teacher, body)
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT status, usd, possibly_usd, possibly_attempts FROM calls").fetchone()
    assert row == ("failed", 0.0, pytest.approx(worst), 1)
    assert budget.possibly_usd == pytest.approx(worst) and budget.reserved_usd == 0.0


class _Refusing(FakeBatchApi):
    """Every answer comes back refused (billed, no usable text, worth asking again)."""

    async def results(self, batch_id: str, custom_ids: frozenset[str]) -> AsyncIterator[BatchOutcome]:
        for item in self.batches[batch_id].items:
            self.billed.append(item.custom_id)
            yield BatchOutcome(
                custom_id=item.custom_id,
                error="refused",
                retryable=True,
                unusable="refused",
                input_tokens=10,
                output_tokens=4,
            )


async def test_refused_answers_are_recorded_as_read_even_when_the_request_then_goes_to_sync(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    async with Store.open(db) as store:
        api = _Refusing()
        teacher = _teacher(_section(max_attempts=2, fallback="sync"), store, Budget(None), api, SyncClient())

        async def body() -> None:
            assert await _collect_one({}, teacher, 0) is None

        await _with_lane(teacher, body)
    rows = _rows(db)
    # Two refused batch answers, each paid (10 in + 4 out at half of _cost), then the sync answer.
    assert [r[1:3] for r in rows] == [("failed", "batch"), ("failed", "batch"), ("completed", "sync")]
    assert [r[4] for r in rows] == [pytest.approx(9e-6), pytest.approx(9e-6), pytest.approx(20e-6)]
    assert len(api.billed) == 2


async def test_a_batch_downloaded_again_after_a_kill_adds_no_second_row_for_a_billed_unusable_answer(
    tmp_path: Path,
) -> None:
    db = tmp_path / "store.sqlite"
    api = _Refusing(hold=True)
    section = _section(max_attempts=1)
    async with Store.open(db) as store:
        teacher = _teacher(section, store, Budget(None), api, SyncClient())
        async with anyio.create_task_group() as tg:
            await tg.start(teacher.batch.run)  # type: ignore[union-attr]
            tg.start_soon(_collect_one, {}, teacher, 0)
            await api.submitted.wait()
            api.hold = False
            # Killed as the row of its answer is committed, before the batch is closed.
            await _until(lambda: bool(_rows(db)))
            tg.cancel_scope.cancel()
    with sqlite3.connect(db) as conn:
        # As a SIGKILL leaves it: the answer's row committed, the batch not closed.
        conn.execute("DELETE FROM batches WHERE kind = 'closed'")
    assert len(_rows(db)) == 1

    async with Store.open(db) as store:
        teacher = _teacher(section, store, Budget(None), api, SyncClient())
        await _with_lane(teacher, lambda: _until(lambda: _all_closed(store)))
        (record,) = batch_records(store.connection, "b")
    assert record.closed and len(api.billed) == 2  # downloaded twice, the provider billed it once in truth
    assert [r[1:3] for r in _rows(db)] == [("failed", "batch")]


async def test_a_key_left_in_two_open_batches_gets_a_row_for_each_paid_answer(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    api = FakeBatchApi()
    async with Store.open(db) as store:
        teacher = _teacher(_section(), store, Budget(None), api, SyncClient())
        slot = CallSlot(key=_key(teacher, 0), dataset="d", sample_id="0", teacher="b", stage="rationale")
        item = BatchItem(custom_id=slot.key, request=teacher.request(_question(0)))
        # Killed while collecting batch A: the request had failed there and gone into batch B already.
        for local_id in ("A", "B"):
            plan = BatchPlanned(local_id=local_id, teacher="b", provider="openai", tag=f"tag-{local_id}", slots=(slot,))
            await record_batch_event(store, "b", plan)
            batch_id = await api.submit([item], tag=f"tag-{local_id}")
            await record_batch_event(store, "b", BatchSubmitted(local_id=local_id, batch_id=batch_id))

    async with Store.open(db) as store:
        teacher = _teacher(_section(), store, Budget(None), api, SyncClient())
        await _with_lane(teacher, lambda: _until(lambda: _all_closed(store)))
        records = batch_records(store.connection, "b")
    assert api.billed == [slot.key, slot.key] and all(r.closed for r in records)
    assert [r[1:3] for r in _rows(db)] == [("completed", "batch"), ("completed", "batch")]


async def _until(done) -> None:
    """Return once `done()` holds: checked at each turn of the loop (no delay), for at most 10 s."""
    with anyio.fail_after(10):
        while not done():
            await anyio.lowlevel.checkpoint()


def _all_closed(store: Store) -> bool:
    return all(r.closed for r in batch_records(store.connection, "b"))


async def test_a_resumed_batch_holds_its_worst_cases_against_the_cap_until_its_results_settle(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    api = FakeBatchApi(hold=True)
    async with Store.open(db) as store:
        teacher = _teacher(_section(), store, Budget(1.0), api, SyncClient())
        worst = teacher.worst_case_usd(teacher.request(_question(0)), _half)
        async with anyio.create_task_group() as tg:
            await tg.start(teacher.batch.run)  # type: ignore[union-attr]
            tg.start_soon(_collect_one, {}, teacher, 0)
            await api.submitted.wait()
            tg.cancel_scope.cancel()  # killed while the batch runs

    async with Store.open(db) as store:
        budget = Budget(1.0)
        teacher = _teacher(_section(), store, budget, api, SyncClient())
        assert teacher.batch is not None
        async with anyio.create_task_group() as tg:
            await tg.start(teacher.batch.run)
            # Sent by the killed run, so out of this run's hands: it counts against the cap from the start.
            assert budget.reserved_usd == pytest.approx(worst)
            api.hold = False
            await _until(lambda: _all_closed(store))
            tg.cancel_scope.cancel()
    assert budget.reserved_usd == 0.0 and budget.spent_usd == pytest.approx(_rows(db)[0][4])


async def test_a_batch_that_cannot_be_polled_is_left_open_and_its_requests_are_not_sent_again(tmp_path: Path) -> None:
    class Unknown(FakeBatchApi):
        async def status(self, batch_id: str) -> BatchStatus:
            # As a key of another project sees it.
            raise Permanent(f"teacher 'b': batch {batch_id}: HTTP 404: No batch found with id '{batch_id}'.")

    db = tmp_path / "store.sqlite"
    api = Unknown()
    async with Store.open(db) as store:
        budget = Budget(1.0)
        teacher = _teacher(_section(), store, budget, api, SyncClient())
        answers: dict[int, Answer] = {}

        async def body() -> None:
            await _collect_one(answers, teacher, 0)
            # Asked again in another slot: still not sent.
            answers[1] = await teacher.ask(_question(0), dataset="d", sample_id="1", stage="rationale")

        await _with_lane(teacher, body)
        (record,) = batch_records(store.connection, "b")
    assert api.sizes() == [1] and not record.closed and record.batch_id == "batch_0"
    assert answers[0] == answers[1] and answers[0].text is None and answers[0].error is not None
    assert answers[0].error.startswith("teacher 'b': batch batch_0: cannot be polled (") and "404" in answers[0].error
    # Perhaps billed: booked as such, not held for ever.
    assert budget.reserved_usd == 0.0 and budget.possibly_usd > 0


async def test_samples_waiting_on_a_batch_are_bounded_and_a_new_one_waits_for_a_parked_place(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    api = FakeBatchApi(hold=True)
    async with Store.open(db) as store:
        budget = Budget(None)
        sync_a = SyncClient()
        teachers = [
            _teacher(_section("b", model="mb"), store, budget, api, SyncClient()),
            _teacher(_section("s1", mode="sync"), store, budget, None, sync_a),
            _teacher(_section("s2", mode="sync"), store, budget, None, SyncClient()),
        ]
        committee = Committee(teachers, ReviewSection(), store)
        counters = TeachCounters()
        send, recv = anyio.create_memory_object_stream[Mistake](max_buffer_size=0)

        async def feed() -> None:
            async with send:
                for i in range(4):
                    await send.send(_mistake(i))

        def started() -> set[int]:
            return {i for i in range(4) for r in sync_a.requests if f"What is {i} + {i}?" in r.messages[-1].content}

        async def body() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(feed)
                tg.start_soon(
                    lambda: teach_dataset(
                        committee,
                        recv,
                        limiter=anyio.CapacityLimiter(1),
                        parked=anyio.CapacityLimiter(1),
                        done_ids=frozenset(),
                        on_decided=_ignore,
                        counters=counters,
                        budget_reached=lambda: False,
                    )
                )
                with anyio.fail_after(20):
                    while not {0, 1} <= started():
                        await sync_a.arrived.wait()
                await anyio.wait_all_tasks_blocked()
                # Sample 0 parked; sample 1 waits for its place with its slot held; 2 and 3 wait for a slot.
                assert started() == {0, 1} and counters.decided == 0
                api.hold = False

        await _with_lane(teachers[0], body)
    assert counters.decided == 4 and counters.incomplete == 0


async def _ignore(sample) -> None:
    pass


async def test_a_batch_that_may_have_been_created_keeps_its_requests_from_being_sent_again(tmp_path: Path) -> None:
    from core.errors import Retryable

    class Lost(FakeBatchApi):
        def __init__(self) -> None:
            super().__init__()
            self.creates = 0

        async def submit(self, items: Sequence[BatchItem], *, tag: str) -> str:
            self.creates += 1
            raise Retryable(f"teacher 'b': batch {tag!r}: connection reset; the batch may have been created")

        async def find(self, tag: str, **_) -> str | None:
            raise Permanent(f"teacher 'b': finding batch {tag!r}: HTTP 503 after 6 attempts")

    db = tmp_path / "store.sqlite"
    api = Lost()
    async with Store.open(db) as store:
        budget = Budget(1.0)
        teacher = _teacher(_section(), store, budget, api, SyncClient())
        answers: dict[int, Answer] = {}

        async def body() -> None:
            await _collect_one(answers, teacher, 0)
            answers[1] = await teacher.ask(_question(0), dataset="d", sample_id="1", stage="rationale")

        await _with_lane(teacher, body)
        (record,) = batch_records(store.connection, "b")
    assert api.creates == 1 and not record.closed and record.batch_id is None
    assert answers[0] == answers[1] and answers[0].error is not None and "cannot look up" in answers[0].error
    # It may be running and billing: booked as possibly billed, not released, not held for ever.
    assert budget.possibly_usd > 0 and budget.reserved_usd == 0.0


async def test_a_queued_request_answered_meanwhile_is_not_sent(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    api = FakeBatchApi()
    async with Store.open(db) as store:
        # Batches go when full (two requests), never on the window.
        teacher = _teacher(_section(batch_max_requests=2, batch_window_s=3600), store, Budget(None), api, SyncClient())
        answers: dict[int, Answer] = {}

        async def body() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_collect_one, answers, teacher, 0)
                await anyio.wait_all_tasks_blocked()
                # Its answer arrives another way (a batch an earlier run left open, answering the same request).
                row = CallRow(
                    key=_key(teacher, 0),
                    dataset="d",
                    sample_id="0",
                    teacher="b",
                    stage="rationale",
                    status="completed",
                    text="from elsewhere",
                    mode="batch",
                    batch="other",
                )
                await store.add_call(row)
                tg.start_soon(_collect_one, answers, teacher, 1)

        await _with_lane(teacher, body)
    assert answers[0] == Answer("from elsewhere") and answers[1] == Answer("re: question 1")
    assert [[i.custom_id for i in b.items] for b in api.batches.values()] == [[_key(teacher, 1)]]
