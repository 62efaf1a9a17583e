"""The three batch clients (adapters/batch/) against the emulator's Batch APIs, and against a few
hand-made misbehaving servers for what the emulator does not do (garbled lines, lost answers, 503s).

The emulator runs on a fake clock: a batch finishes when the test moves the clock past its delay.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import anyio
import msgspec
import pytest
from aiohttp import web

from adapters.batch import BatchApi, batch_api
from adapters.batch.packing import check_items
from core.batch import BatchItem, BatchOutcome
from core.calls import Message, ProviderName
from core.capabilities import teacher_request
from core.config import TeacherSection
from core.errors import Permanent, Retryable
from emulator import Emulator, EmulatorSpec, run_emulator
from emulator.spec import BatchBehaviour
from store.calls import request_key

KEY = "sk-test-secret-key-0123456789"
PROVIDERS: tuple[ProviderName, ...] = ("openai", "anthropic", "gemini")
# provider -> (plain model, reasoning model and its setting)
MODELS = {
    "openai": ("gpt-4o-mini", "o4-mini", "low"),
    "anthropic": ("claude-3-5-haiku", "claude-sonnet-4-5", 2048),
    "gemini": ("gemini-2.0-flash", "gemini-2.5-flash", "low"),
}
DELAY_S = 100.0

pytestmark = pytest.mark.anyio


class Clock:
    """The emulator's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    api: BatchApi
    emu: Emulator
    clock: Clock
    section: TeacherSection


def _section(provider: ProviderName, model: str, **kw: object) -> TeacherSection:
    return TeacherSection(name="t1", provider=provider, model=model, mode="batch", **kw)  # type: ignore[arg-type]


def _items(section: TeacherSection, n: int, prefix: str = "") -> list[BatchItem]:
    items = []
    for i in range(n):
        request = teacher_request(section, (Message("user", f"{prefix}Question {i}: what is {i} + {i}?"),))
        items.append(BatchItem(custom_id=request_key(section.provider, request), request=request))
    return items


@asynccontextmanager
async def _served(
    provider: ProviderName, *, model: str | None = None, reasoning: object = None, **behaviour: object
) -> AsyncIterator[Served]:
    clock = Clock()
    spec = EmulatorSpec(batch=BatchBehaviour(**{"delay_s": DELAY_S, **behaviour}))  # type: ignore[arg-type]
    section = _section(provider, model or MODELS[provider][0], **({"reasoning": reasoning} if reasoning else {}))
    async with run_emulator(spec, clock=clock) as emu, aiohttp.ClientSession() as session:
        yield Served(batch_api(section, session, KEY, base_url=emu.base_url(provider)), emu, clock, section)


async def _collect(api: BatchApi, batch_id: str, items: list[BatchItem]) -> dict[str, BatchOutcome]:
    outcomes = {}
    async for outcome in api.results(batch_id, frozenset(i.custom_id for i in items)):
        assert outcome.custom_id not in outcomes
        outcomes[outcome.custom_id] = outcome
    assert set(outcomes) == {i.custom_id for i in items}
    return outcomes


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_submit_poll_and_download_bill_each_request_once(provider: ProviderName) -> None:
    async with _served(provider) as s:
        items = _items(s.section, 5)
        batch_id = await s.api.submit(items, tag="run1-t1-b1")
        before = await s.api.status(batch_id)
        assert before.state in ("submitted", "running") and before.succeeded == 0
        s.clock.now += DELAY_S + 1
        after = await s.api.status(batch_id)
        assert (after.state, after.succeeded, after.errored) == ("completed", 5, 0)
        outcomes = await _collect(s.api, batch_id, items)
        for outcome in outcomes.values():
            assert outcome.result is not None and outcome.error is None
            assert outcome.result.text and outcome.result.input_tokens > 0 and outcome.result.output_tokens > 0
        stats = s.emu.stats().total
        assert stats.batch_billed == 5 and stats.received == 0
        assert sorted(s.emu.stats().models[s.section.model].batch_ids.values()) == [1] * 5


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_reasoning_and_cached_tokens_decode_as_in_the_sync_path(provider: ProviderName) -> None:
    _, model, setting = MODELS[provider]
    async with _served(provider, model=model, reasoning=setting) as s:
        # A long shared prefix, as FAIR's prompts have: the later requests may read it from the cache.
        prefix = "Solve the following grade-school problem step by step, citing each quantity. " * 120
        items = [
            BatchItem(custom_id=i.custom_id, request=msgspec.structs.replace(i.request, cache_prefix_chars=len(prefix)))
            for i in _items(s.section, 3, prefix=prefix)
        ]
        batch_id = await s.api.submit(items, tag="reasoning")
        s.clock.now += DELAY_S + 1
        assert (await s.api.status(batch_id)).state == "completed"
        outcomes = await _collect(s.api, batch_id, items)
        results = [o.result for o in outcomes.values()]
        assert all(r is not None and r.detail.reasoning_tokens > 0 for r in results)
        assert all(r is not None and r.output_tokens > r.detail.reasoning_tokens for r in results)
        assert sum(r.detail.cache_read_tokens for r in results if r) > 0
        billed = s.emu.stats().total
        assert sum(r.output_tokens for r in results if r) == billed.batch_output_tokens


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_per_request_errors_come_back_retryable(provider: ProviderName) -> None:
    async with _served(provider, error_share=1.0) as s:
        items = _items(s.section, 3)
        batch_id = await s.api.submit(items, tag="errors")
        s.clock.now += DELAY_S + 1
        status = await s.api.status(batch_id)
        assert status.state == "completed" and status.errored == 3
        for outcome in (await _collect(s.api, batch_id, items)).values():
            assert outcome.result is None and outcome.error and outcome.retryable
            assert KEY not in outcome.error
        assert s.emu.stats().total.batch_billed == 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_expired_batch_keeps_what_finished_and_hands_back_the_rest(provider: ProviderName) -> None:
    async with _served(provider, expire_after_s=DELAY_S / 2) as s:
        items = _items(s.section, 4)
        batch_id = await s.api.submit(items, tag="expiry")
        s.clock.now += DELAY_S + 1
        assert (await s.api.status(batch_id)).state == "expired"
        outcomes = await _collect(s.api, batch_id, items)
        done = [o for o in outcomes.values() if o.result is not None]
        rest = [o for o in outcomes.values() if o.result is None]
        assert 0 < len(done) < 4 and all(o.retryable and o.error for o in rest)
        assert s.emu.stats().total.batch_billed == len(done)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_cancelled_batch_hands_back_its_unfinished_requests(provider: ProviderName) -> None:
    async with _served(provider) as s:
        items = _items(s.section, 3)
        batch_id = await s.api.submit(items, tag="cancel")
        await s.api.cancel(batch_id)
        s.clock.now += 1
        assert (await s.api.status(batch_id)).state == "cancelled"
        outcomes = await _collect(s.api, batch_id, items)
        assert all(o.result is None and o.retryable for o in outcomes.values())
        assert s.emu.stats().total.batch_billed == 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_find_recovers_a_batch_created_before_a_crash(provider: ProviderName) -> None:
    async with _served(provider) as s:
        first = _items(s.section, 3)
        other = _items(s.section, 2, prefix="Other. ")
        since = time.time() - 1
        first_id = await s.api.submit(first, tag="run1-t1-b1")
        other_id = await s.api.submit(other, tag="run1-t1-b2")
        # The run died after creating b1 and before recording its id: b1 is found, not sent again.
        ids = frozenset(i.custom_id for i in first)
        assert await s.api.find("run1-t1-b1", custom_ids=ids, since=since) == first_id
        assert await s.api.find("run1-t1-b2", custom_ids=frozenset(i.custom_id for i in other), since=since) == other_id
        missing = frozenset(i.custom_id for i in _items(s.section, 4, prefix="Never sent. "))
        assert await s.api.find("run1-t1-b3", custom_ids=missing, since=since) is None
        assert s.emu.stats().batches_created == 2


async def test_anthropic_find_tells_same_sized_batches_apart_once_they_end() -> None:
    # Anthropic batches carry no tag: a lost batch is matched by its size, and by its custom_ids once ended.
    async with _served("anthropic") as s:
        since = time.time() - 1
        a, b = _items(s.section, 2, prefix="A. "), _items(s.section, 2, prefix="B. ")
        a_ids, b_ids = (frozenset(i.custom_id for i in x) for x in (a, b))
        a_id, b_id = await s.api.submit(a, tag="a"), await s.api.submit(b, tag="b")
        with pytest.raises(Retryable, match="2 batches in progress could be it"):
            await s.api.find("a", custom_ids=a_ids, since=since)
        assert await s.api.find("a", custom_ids=a_ids, since=since, exclude=frozenset({b_id})) == a_id
        s.clock.now += DELAY_S + 1
        assert await s.api.find("a", custom_ids=a_ids, since=since) == a_id
        assert await s.api.find("b", custom_ids=b_ids, since=since) == b_id
        # Created before `since`: not ours.
        assert await s.api.find("a", custom_ids=a_ids, since=time.time() + 3600) is None
        with pytest.raises(Permanent, match="needs `custom_ids` and `since`"):
            await s.api.find("a")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_batch_max_requests_splits_work_into_several_batches(provider: ProviderName) -> None:
    async with _served(provider) as s:
        async with aiohttp.ClientSession() as session:
            section = _section(provider, MODELS[provider][0], batch_max_requests=2)
            api = batch_api(section, session, KEY, base_url=s.emu.base_url(provider))
            assert api.limits.max_requests == 2 and s.api.limits.max_requests > 2
            items = _items(section, 5)
            with pytest.raises(ValueError, match="over the 2"):
                await api.submit(items, tag="too-big")
            parts = [items[i : i + api.limits.max_requests] for i in range(0, len(items), api.limits.max_requests)]
            ids = [await api.submit(part, tag=f"split-{n}") for n, part in enumerate(parts)]
            s.clock.now += DELAY_S + 1
            got = {}
            for batch_id, part in zip(ids, parts, strict=True):
                got.update(await _collect(api, batch_id, part))
            assert len(got) == 5 and all(o.result is not None for o in got.values())


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_result_for_a_request_not_sent_is_a_one_line_error(provider: ProviderName) -> None:
    async with _served(provider) as s:
        items = _items(s.section, 3)
        batch_id = await s.api.submit(items, tag="unknown")
        s.clock.now += DELAY_S + 1
        with pytest.raises(Permanent) as caught:
            await _collect(s.api, batch_id, items[:2])
        message = str(caught.value)
        assert "'t1'" in message and batch_id in message and "not sent" in message
        assert "\n" not in message and KEY not in message


async def test_our_content_keys_fit_anthropics_custom_id_rule() -> None:
    from adapters.batch.anthropic import CUSTOM_ID

    section = _section("anthropic", "claude-3-5-haiku")
    items = _items(section, 2)
    assert all(CUSTOM_ID.match(i.custom_id) for i in items) and len(items[0].custom_id) == 64
    async with aiohttp.ClientSession() as session:
        api = batch_api(section, session, KEY, base_url="http://127.0.0.1:1")
        bad = BatchItem(custom_id="not/a:valid id", request=items[0].request)
        with pytest.raises(ValueError, match="not 1-64 letters"):
            await api.submit([bad], tag="bad")


def test_check_items_refuses_a_batch_with_a_request_twice() -> None:
    from core.batch import BatchLimits

    section = _section("openai", "gpt-4o-mini")
    items = _items(section, 4)
    limits = BatchLimits(max_requests=10, max_bytes=250, max_in_flight=1)
    with pytest.raises(ValueError, match="repeat"):
        check_items([items[0], items[0]], limits, lambda item: 1)


# ---------------------------------------------------------------- servers that misbehave


@asynccontextmanager
async def _fake(routes: Callable[[web.Application], None]) -> AsyncIterator[str]:
    app = web.Application()
    routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()


def _openai_results(output: bytes) -> Callable[[web.Application], None]:
    async def batch(request: web.Request) -> web.Response:
        return web.json_response({"id": "batch_x", "status": "completed", "output_file_id": "file-out"})

    async def content(request: web.Request) -> web.Response:
        return web.Response(body=output)

    return lambda app: (
        app.router.add_get("/v1/batches/batch_x", batch),
        app.router.add_get("/v1/files/file-out/content", content),
    )  # type: ignore[return-value]


async def test_per_request_failures_say_whether_to_send_again_and_keep_billed_usage() -> None:
    section = _section("openai", "gpt-4o-mini")
    a, b, c, d = sorted(i.custom_id for i in _items(section, 4))
    lines = [
        {"custom_id": a, "response": {"status_code": 400, "body": {"error": {"message": "bad max_tokens"}}}},
        {"custom_id": b, "response": {"status_code": 500, "body": {"error": {"message": "server error"}}}},
        {"custom_id": c, "response": None, "error": {"code": "batch_expired", "message": "window passed"}},
        {
            "custom_id": d,
            "response": {
                "status_code": 200,
                "body": {
                    "choices": [{"message": {"content": ""}, "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 64},
                },
            },
        },
    ]
    body = b"".join(msgspec.json.encode(line) + b"\n" for line in lines)
    async with _fake(_openai_results(body)) as url, aiohttp.ClientSession() as session:
        api = batch_api(section, session, KEY, base_url=url + "/v1")
        got = {o.custom_id: o async for o in api.results("batch_x", frozenset({a, b, c, d}))}
    assert (got[a].retryable, got[a].http_status, "bad max_tokens" in (got[a].error or "")) == (False, 400, True)
    assert (got[b].retryable, got[b].http_status) == (True, 500)
    assert got[c].retryable and "batch_expired" in (got[c].error or "")
    truncated = got[d]
    assert (truncated.unusable, truncated.retryable, truncated.input_tokens, truncated.output_tokens) == (
        "truncated",
        False,
        12,
        64,
    )


async def test_a_malformed_output_line_names_the_batch_and_the_line() -> None:
    section = _section("openai", "gpt-4o-mini")
    items = _items(section, 2)
    good = (
        b'{"id": "r1", "custom_id": "%s", "response": {"status_code": 200, "body": '
        b'{"choices": [{"message": {"content": "4"}, "finish_reason": "stop"}], '
        b'"usage": {"prompt_tokens": 9, "completion_tokens": 1}}}, "error": null}' % items[0].custom_id.encode()
    )
    async with _fake(_openai_results(good + b"\n\n{not json at all\n")) as url, aiohttp.ClientSession() as session:
        api = batch_api(section, session, KEY, base_url=url + "/v1")
        seen = []
        with pytest.raises(Permanent) as caught:
            async for outcome in api.results("batch_x", frozenset(i.custom_id for i in items)):
                seen.append(outcome)
        assert [o.result.text for o in seen if o.result] == ["4"]
        message = str(caught.value)
        assert "batch batch_x" in message and "line 3" in message and "\n" not in message


def _anthropic_results(results: bytes, host: str | None = None) -> Callable[[web.Application], None]:
    async def batch(request: web.Request) -> web.Response:
        origin = host or f"http://{request.host}"
        return web.json_response(
            {
                "id": "msgbatch_x",
                "processing_status": "ended",
                "request_counts": {"succeeded": 2},
                "results_url": f"{origin}/v1/messages/batches/msgbatch_x/results",
            }
        )

    async def content(request: web.Request) -> web.Response:
        return web.Response(body=results)

    return lambda app: (
        app.router.add_get("/v1/messages/batches/msgbatch_x", batch),
        app.router.add_get("/v1/messages/batches/msgbatch_x/results", content),
    )  # type: ignore[return-value]


async def test_anthropic_results_name_a_garbled_line_and_stay_on_the_providers_host() -> None:
    section = _section("anthropic", "claude-3-5-haiku")
    ids = frozenset(i.custom_id for i in _items(section, 2))
    garbled = b'{"custom_id": "%s", "result": {"type": "succeeded", "message": ' % min(ids).encode()
    async with _fake(_anthropic_results(garbled)) as url, aiohttp.ClientSession() as session:
        api = batch_api(section, session, KEY, base_url=url)
        with pytest.raises(Permanent, match=r"batch msgbatch_x: line 1 of the results is not a result"):
            await anext(api.results("msgbatch_x", ids))
    async with _fake(_anthropic_results(b"", host="http://127.0.0.1:1")) as url, aiohttp.ClientSession() as session:
        api = batch_api(section, session, KEY, base_url=url)
        with pytest.raises(Permanent, match="results_url points to another host"):
            await anext(api.results("msgbatch_x", ids))


async def test_gemini_responses_without_metadata_are_matched_by_position() -> None:
    # Not every Gemini response echoes its metadata; they come in request order, and requests go out sorted.
    section = _section("gemini", "gemini-2.0-flash")
    ids = sorted(i.custom_id for i in _items(section, 3))
    answers = [{"response": {"candidates": [{"content": {"parts": [{"text": c}]}}]}} for c in ids]
    document = {"name": "batches/x", "done": True, "metadata": {"state": "BATCH_STATE_SUCCEEDED"}}

    def routes(answered: list[dict]) -> Callable[[web.Application], None]:
        async def operation(request: web.Request) -> web.Response:
            return web.json_response({**document, "response": {"inlinedResponses": {"inlinedResponses": answered}}})

        return lambda app: app.router.add_get("/v1beta/batches/x", operation)  # type: ignore[return-value]

    async with _fake(routes(answers)) as url, aiohttp.ClientSession() as session:
        api = batch_api(section, session, KEY, base_url=url)
        got = [o async for o in api.results("batches/x", frozenset(ids))]
        assert [(o.custom_id, o.result.text if o.result else None) for o in got] == [(c, c) for c in ids]
    async with _fake(routes(answers[:2])) as url, aiohttp.ClientSession() as session:
        api = batch_api(section, session, KEY, base_url=url)
        with pytest.raises(Permanent, match=r"batch batches/x: response 1 has no metadata\.key and 2 responses"):
            await anext(api.results("batches/x", frozenset(ids)))


async def test_control_calls_retry_503s_and_never_leak_the_key() -> None:
    calls = {"n": 0}

    async def batch(request: web.Request) -> web.Response:
        calls["n"] += 1
        if calls["n"] < 3:
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        return web.json_response(
            {"id": "batch_x", "status": "in_progress", "request_counts": {"total": 4, "completed": 1, "failed": 0}}
        )

    async def refused(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": f"Incorrect API key provided: {KEY}"}}, status=401)

    def routes(app: web.Application) -> None:
        app.router.add_get("/v1/batches/batch_x", batch)
        app.router.add_get("/v1/batches/batch_y", refused)

    async with _fake(routes) as url, aiohttp.ClientSession() as session:
        api = batch_api(_section("openai", "gpt-4o-mini"), session, KEY, base_url=url + "/v1")
        api._http._sleep = _no_sleep  # type: ignore[attr-defined]
        status = await api.status("batch_x")
        assert (status.state, status.total, status.succeeded, calls["n"]) == ("running", 4, 1, 3)
        with pytest.raises(Permanent) as caught:
            await api.status("batch_y")
        message = str(caught.value)
        assert KEY not in message and "***" in message and "batch batch_y" in message and "'t1'" in message


async def test_a_lost_answer_to_create_finds_the_batch_instead_of_paying_twice() -> None:
    created: list[dict] = []

    async def upload(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"id": "file-1"})

    async def create(request: web.Request) -> web.Response:
        created.append(await request.json())
        # The batch exists, but its answer comes back garbled: the client cannot know the id.
        return web.Response(body=b'{"id": "batch_', content_type="application/json")

    async def listing(request: web.Request) -> web.Response:
        data = [
            {"id": f"batch_{n}", "status": "validating", "metadata": body["metadata"], "created_at": 0}
            for n, body in enumerate(created)
        ]
        return web.json_response({"data": data[::-1], "has_more": False})

    def routes(app: web.Application) -> None:
        app.router.add_post("/v1/files", upload)
        app.router.add_post("/v1/batches", create)
        app.router.add_get("/v1/batches", listing)

    section = _section("openai", "gpt-4o-mini")
    async with _fake(routes) as url, aiohttp.ClientSession() as session:
        api = batch_api(section, session, KEY, base_url=url + "/v1")
        assert await api.submit(_items(section, 2), tag="lost") == "batch_0"
        assert len(created) == 1 and created[0]["metadata"] == {"committee_tag": "lost"}


async def _no_sleep(delay_s: float) -> None:
    assert 0 <= delay_s <= 60


async def test_lines_after_a_malformed_or_foreign_one_still_come_out_before_the_error() -> None:
    # Each readable line is a paid answer: a garbled line or a stranger's custom_id before it must not lose it.
    section = _section("openai", "gpt-4o-mini")
    a, b, c = sorted(i.custom_id for i in _items(section, 3))

    def good(custom_id: str, text: str) -> bytes:
        body = {"choices": [{"message": {"content": text}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 9}}
        line = {"custom_id": custom_id, "response": {"status_code": 200, "body": body}, "error": None}
        return msgspec.json.encode(line)

    foreign = good("not-ours", "?")
    body = b"\n".join([good(a, "1"), b"{not json", foreign, good(b, "2")]) + b"\n"
    async with _fake(_openai_results(body)) as url, aiohttp.ClientSession() as session:
        api = batch_api(section, session, KEY, base_url=url + "/v1")
        seen = []
        with pytest.raises(Permanent) as caught:
            async for outcome in api.results("batch_x", frozenset({a, b, c})):
                seen.append(outcome)
    # c has no readable result: it may be the garbled line (paid), so it is not handed back as never run.
    assert [(o.custom_id, o.result.text if o.result else None) for o in seen] == [(a, "1"), (b, "2")]
    message = str(caught.value)
    assert "batch batch_x" in message and "line 2 of the output file file-out is not a result" in message
    assert "1 more" in message and "\n" not in message


async def test_a_create_whose_answer_was_lost_and_cannot_be_looked_up_is_not_called_refused() -> None:
    # The lane sends the requests of a refused batch (Permanent) again; one that may exist must say Retryable.
    async def upload(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"id": "file-1"})

    async def create(request: web.Request) -> web.Response:
        return web.Response(body=b'{"id": "batch_', content_type="application/json")

    async def listing(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "listing is down"}}, status=404)

    def routes(app: web.Application) -> None:
        app.router.add_post("/v1/files", upload)
        app.router.add_post("/v1/batches", create)
        app.router.add_get("/v1/batches", listing)

    section = _section("openai", "gpt-4o-mini")
    async with _fake(routes) as url, aiohttp.ClientSession() as session:
        api = batch_api(section, session, KEY, base_url=url + "/v1")
        with pytest.raises(Retryable) as caught:
            await api.submit(_items(section, 2), tag="lost")
    assert caught.value.possibly_billed and "may have been created" in str(caught.value)
