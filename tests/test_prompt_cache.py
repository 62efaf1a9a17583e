"""Prompt caching: review prompts put what a reviewer's reviews of one sample share first, and
Anthropic teachers mark that prefix with cache_control when it is long enough to be cached."""

from __future__ import annotations

import anyio
import msgspec
import pytest

from adapters import anthropic, make_client
from bench.prompt_cache import measure
from core.calls import ChatRequest
from core.config import TeacherSection
from core.records import Mistake
from emulator import EmulatorSpec, Latency, run_emulator
from engine.budget import Budget
from engine.lane import Lane, LaneLimits
from engine.teacher import Teacher
from engine.tokens import estimate_tokens
from prompts.sets import prompt_set
from store.calls import Store, request_key
from tasks import load_split

SHORT = Mistake(
    id="1", task="svamp", question="Tom has 3 apples and buys 4 more. How many now?", gold="7",
    student_answer="The answer is 12.", student_final_answer="12",
)  # fmt: skip
# A question long enough (well over 1024 tokens with the instructions) for Claude to cache.
LONG = msgspec.structs.replace(SHORT, question=" ".join(["Tom counts the apples in each of the baskets again."] * 200))
RATIONALES = ("Let's think step by step. 3 + 4 = 7.\nThe answer is 7.", "We add.\nThe answer is 7.")


def _review(m: Mistake, rationale: str, prompts: str = "committee") -> str:
    return prompt_set(prompts).teacher_messages("review", m, rationale=rationale)[-1].content


def _teacher(provider: str, model: str) -> Teacher:
    section = TeacherSection(name="t", provider=provider, model=model)  # type: ignore[arg-type]
    return Teacher(section, None, store=None, budget=None, cost_usd=lambda i, o: 0.0, estimate_tokens=estimate_tokens)  # type: ignore[arg-type]


def test_committee_review_prompt_ends_with_the_rationale():
    first, second = (_review(SHORT, r) for r in RATIONALES)
    for text, rationale in zip((first, second), RATIONALES, strict=True):
        assert text.endswith(rationale)
    prefix = first.find(RATIONALES[0])
    # Instructions, question and hint come first, identical for every rationale of the sample.
    assert first[:prefix] == second[: second.find(RATIONALES[1])]
    assert "Hint: the correct answer is 7." in first[:prefix] and SHORT.question in first[:prefix]


@pytest.mark.parametrize(
    ("provider", "model", "question", "marked"),
    [
        ("anthropic", "claude-sonnet-4-20250514", LONG, True),
        ("anthropic", "claude-sonnet-4-20250514", SHORT, False),  # far below 1024 tokens
        ("anthropic", "claude-haiku-4-5", LONG, False),  # Haiku 4.5 caches from 4096 tokens only
        ("openai", "gpt-4.1", LONG, False),  # OpenAI caches by itself; nothing to mark
    ],
)
def test_cache_breakpoint_only_where_it_caches(provider, model, question, marked):
    teacher = _teacher(provider, model)
    text = _review(question, RATIONALES[0])
    prefix = text.find(RATIONALES[0])
    messages = prompt_set("committee").teacher_messages("review", question, rationale=RATIONALES[0])
    request = teacher.request(messages, shared_prefix_chars=prefix)
    assert request.cache_prefix_chars == (prefix if marked else 0)
    # A cache hint changes the bill, not the answer: the store key ignores it.
    assert request_key(provider, request) == request_key(provider, teacher.request(messages))
    if provider == "anthropic":
        body = msgspec.json.decode(anthropic.encode(request))
        content = body["messages"][-1]["content"]
        if marked:
            assert content[0] == {"type": "text", "text": text[:prefix], "cache_control": {"type": "ephemeral"}}
            assert content[1] == {"type": "text", "text": text[prefix:]}
        else:
            assert content == text


def test_min_cacheable_tokens_per_model():
    assert anthropic.min_cacheable_tokens("claude-sonnet-4-20250514") == 1024
    assert anthropic.min_cacheable_tokens("claude-opus-4-1") == 1024
    assert anthropic.min_cacheable_tokens("claude-3-5-haiku-latest") == 2048
    assert anthropic.min_cacheable_tokens("claude-opus-4-5-20251101") == 4096


@pytest.mark.anyio
async def test_emulator_reads_a_message_split_at_a_cache_breakpoint_as_one():
    teacher = _teacher("anthropic", "claude-sonnet-4-20250514")
    messages = prompt_set("committee").teacher_messages("review", LONG, rationale=RATIONALES[0])
    request = teacher.request(messages, shared_prefix_chars=messages[-1].content.find(RATIONALES[0]))
    assert request.cache_prefix_chars > 0
    async with (
        run_emulator(EmulatorSpec(output_tokens=5)) as emu,
        make_client("anthropic", api_key="k", base_url=emu.url) as client,
    ):
        split = await client.complete(request, timeout_s=10)
        whole = await client.complete(msgspec.structs.replace(request, cache_prefix_chars=0), timeout_s=10)
    assert split.text == whole.text and split.input_tokens == whole.input_tokens


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("model", "cached"),
    [("claude-sonnet-4-5", True), ("claude-opus-4-5-20251101", False), ("claude-haiku-4-5", False)],
)
async def test_emulator_caches_a_breakpoint_only_above_the_models_minimum(model, cached):
    # A prefix of about 2,000 tokens: above Sonnet 4.5's 1024, below Opus 4.5's and Haiku 4.5's 4096.
    messages = prompt_set("committee").teacher_messages("review", LONG, rationale=RATIONALES[0])
    prefix = messages[-1].content.find(RATIONALES[0])
    request = ChatRequest(model=model, messages=messages, max_tokens=16, cache_prefix_chars=prefix)
    async with (
        run_emulator(EmulatorSpec(output_tokens=5)) as emu,
        make_client("anthropic", api_key="k", base_url=emu.url) as client,
    ):
        first = await client.complete(request, timeout_s=10)
        second = await client.complete(request, timeout_s=10)
    assert 1500 < first.input_tokens < 4096
    assert (first.detail.cache_write_tokens > 0) == cached and first.detail.cache_read_tokens == 0
    assert (second.detail.cache_read_tokens > 0) == cached and second.detail.cache_write_tokens == 0


def _cached_review(rationale: str, model: str = "claude-sonnet-4-5") -> ChatRequest:
    messages = prompt_set("committee").teacher_messages("review", LONG, rationale=rationale)
    prefix = messages[-1].content.find(rationale)
    return ChatRequest(model=model, messages=messages, max_tokens=16, cache_prefix_chars=prefix)


@pytest.mark.anyio
async def test_emulator_lets_calls_sent_together_each_write_the_cache():
    # "The cache entry is only available after the first response begins"
    # (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching).
    results = []
    # Long enough that the second call arrives before the first has answered, even on a loaded machine.
    spec = EmulatorSpec(output_tokens=5, latency=Latency(median_ms=500))
    async with run_emulator(spec) as emu, make_client("anthropic", api_key="k", base_url=emu.url) as client:

        async def call(rationale: str) -> None:
            results.append(await client.complete(_cached_review(rationale), timeout_s=10))

        async with anyio.create_task_group() as tg:
            for rationale in RATIONALES:
                tg.start_soon(call, rationale)
        await call("A third rationale.\nThe answer is 7.")
    assert [r.detail.cache_write_tokens > 0 for r in results] == [True, True, False]
    assert results[2].detail.cache_read_tokens == results[0].detail.cache_write_tokens


@pytest.mark.anyio
async def test_a_reviewers_reviews_sharing_a_cached_prefix_write_it_once(tmp_path):
    section = TeacherSection(name="c", provider="anthropic", model="claude-sonnet-4-5", max_tokens=16)
    spec = EmulatorSpec(output_tokens=5, latency=Latency(median_ms=50))
    async with (
        run_emulator(spec) as emu,
        make_client("anthropic", api_key="k", base_url=emu.url) as client,
        Store.open(tmp_path / "store.sqlite") as store,
    ):
        lane = Lane("c", client, LaneLimits())
        teacher = Teacher(
            section,
            lane,
            store=store,
            budget=Budget(1.0),
            cost_usd=lambda i, o, d=None: 0.0,
            estimate_tokens=estimate_tokens,
        )

        async def review(rationale: str) -> None:
            messages = prompt_set("committee").teacher_messages("review", LONG, rationale=rationale)
            prefix = messages[-1].content.find(rationale)
            answer = await teacher.ask(
                messages,
                dataset="svamp",
                sample_id="1",
                stage="review",
                target=rationale[:4],
                shared_prefix_chars=prefix,
            )
            assert answer.text

        async with anyio.create_task_group() as tg:
            for rationale in RATIONALES:
                tg.start_soon(review, rationale)
        stats = emu.stats()
    # Sent together both would write (1.25x each) and neither read: the second waits for the first.
    assert stats.total.billed_cache_write_tokens > 0
    assert stats.total.billed_cache_read_tokens == stats.total.billed_cache_write_tokens


def test_paper_review_prompt_is_unchanged_by_caching():
    # The paper set keeps its order (question, rationale, hint): only the question part is shared.
    text = _review(SHORT, RATIONALES[0], "paper")
    assert text.index("Rationale: ") < text.index("Hint: ")


def test_bench_counts_shared_prefixes_and_none_is_cacheable_at_1024_tokens():
    questions = load_split("svamp", "demo", "test", limit=4)
    figure = measure("svamp", questions, "committee", 1024)
    assert figure.calls == 4 * 3 * 3  # per teacher: one feedback, two reviews
    assert 0 < figure.shared_tokens < figure.input_tokens
    assert figure.cacheable_tokens == 0 and figure.saving == 0.0
    assert 0 < figure.saving_unlimited < 0.65  # the most a reused prefix saves at Anthropic's rates
    assert measure("svamp", questions, "committee", 0).saving == pytest.approx(figure.saving_unlimited)
