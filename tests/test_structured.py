"""Structured review scores: each provider's structured-output request, its answer read back,
and the share of reviews without a valid score with and without `[review] structured`."""

from __future__ import annotations

import sqlite3

import msgspec
import pytest

from adapters import anthropic, gemini, make_client, openai
from bench.forecast_accuracy import write_demo_mistakes
from bench.review_scores import measure
from core.calls import REVIEW_SCORE_JSON_SCHEMA, ChatRequest, Reasoning
from core.config import ConfigError, load_config
from core.errors import Permanent
from core.records import Mistake
from emulator import EmulatorSpec, run_emulator
from emulator.fair_script import FairScript
from emulator.spec import AnswerRequest
from prompts.sets import prompt_set
from stages.context import RunContext
from stages.job import run_job
from stages.teachers import check_teachers
from tasks import load_split, parse_score, parse_structured_score, review_score

QUESTIONS = load_split("svamp", "demo", "train")[:1]
Q = QUESTIONS[0]
MISTAKE = Mistake(
    id=Q.id,
    task="svamp",
    question=Q.question,
    gold=Q.gold,
    student_answer="The answer is 3.",
    student_final_answer="3",
)
RATIONALE = f"Let's think step by step. We add the numbers.\nThe answer is {Q.gold}."


def _review(model: str, structured: bool) -> ChatRequest:
    (message,) = prompt_set("committee").teacher_messages("review", MISTAKE, rationale=RATIONALE)
    return ChatRequest(model=model, messages=(message,), max_tokens=400, structured_score=structured)


def test_each_wire_asks_for_the_score_its_own_way_and_only_when_structured():
    plain = [msgspec.json.decode(m.encode(_review("m", False))) for m in (openai, gemini, anthropic)]
    assert "response_format" not in plain[0]
    assert "responseSchema" not in plain[1]["generationConfig"]
    assert "tools" not in plain[2] and "tool_choice" not in plain[2]

    body = msgspec.json.decode(openai.encode(_review("m", True)))
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["required"] == ["reasoning", "score"]

    config = msgspec.json.decode(gemini.encode(_review("m", True)))["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"]["properties"]["score"]["type"] == "INTEGER"

    body = msgspec.json.decode(anthropic.encode(_review("m", True)))
    assert body["tool_choice"] == {"type": "tool", "name": anthropic.SCORE_TOOL}
    assert [t["name"] for t in body["tools"]] == [anthropic.SCORE_TOOL]
    assert body["tools"][0]["input_schema"]["properties"]["score"]["enum"] == [1, 2, 3, 4, 5]


@pytest.mark.anyio
@pytest.mark.parametrize("provider", ["openai", "gemini", "anthropic"])
async def test_structured_answer_of_each_provider_reads_back_as_the_scripted_score(provider):
    # This reviewer forgets the brackets every time: free text yields no score, structured output does.
    script = FairScript(QUESTIONS, forget_brackets={"reviewer": 1.0})
    expected = script.review_score("reviewer", "svamp", RATIONALE, Q.gold)
    seen: list[AnswerRequest] = []

    def answer(ask: AnswerRequest) -> str:
        seen.append(ask)
        return script(ask)

    async with (
        run_emulator(EmulatorSpec(), answer) as emu,
        make_client(provider, api_key="k", base_url=emu.base_url(provider)) as client,
    ):
        free = await client.complete(_review("reviewer", False), timeout_s=10)
        structured = await client.complete(_review("reviewer", True), timeout_s=10)
    assert [a.structured for a in seen] == [False, True]
    assert (seen[1].tool_name is not None) == (provider == "anthropic")
    assert parse_score(free.text) is None
    assert parse_structured_score(structured.text) == expected
    assert review_score(structured.text, structured=True) == expected


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ('{"reasoning": "fine", "score": 4}', 4),
        ('{"reasoning": "fine", "score": 7}', None),
        ('{"reasoning": "fine", "sco', None),  # cut by max_tokens
        ('{"reasoning": "fine"}', None),
        ("Sound. [4]", None),
    ],
)
def test_parse_structured_score(text, score):
    assert parse_structured_score(text) == score


@pytest.mark.anyio
async def test_share_without_a_valid_score_per_reviewer_with_and_without_structured():
    seen: list[tuple[str, bool]] = []
    script = FairScript(load_split("svamp", "demo", "train")[:6], forget_brackets={"model-gpt": 1.0})

    def answer(ask: AnswerRequest) -> str:
        if "peer reviewer" in ask.last_user_text():
            seen.append((ask.model, ask.structured))
        return script(ask)

    result = await measure(6, {"gpt": 1.0}, answer)
    plain = {v.reviewer: v for v in result[False]}
    structured = {v.reviewer: v for v in result[True]}
    # gpt always forgets the brackets: none of its free-text reviews has a score; the others all do.
    assert plain["gpt"].reviews > 0 and plain["gpt"].share == 1.0
    assert plain["gemini"].share == 0.0 and plain["claude"].share == 0.0
    assert {v.parsed_by for v in result[False]} == {"brackets"}
    # Asked through structured output, every review has one.
    assert all(v.share == 0.0 and v.reviews > 0 and v.parsed_by == "structured" for v in structured.values())
    # Every review request of the structured run asked for it, none of the other.
    assert {s for _, s in seen} == {False, True}
    assert sum(s for _, s in seen) == sum(v.reviews for v in structured.values())


@pytest.mark.anyio
async def test_official_sdks_read_the_emulators_structured_answers(monkeypatch):
    openai_sdk = pytest.importorskip("openai")
    anthropic_sdk = pytest.importorskip("anthropic")
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    script = FairScript(QUESTIONS)
    expected = script.review_score("reviewer", "svamp", RATIONALE, Q.gold)
    prompt = _review("reviewer", True).messages[-1].content
    schema = {"name": "review_score", "strict": True, "schema": REVIEW_SCORE_JSON_SCHEMA}
    async with run_emulator(EmulatorSpec(), script) as emu:
        async with openai_sdk.AsyncOpenAI(api_key="k", base_url=emu.base_url("openai")) as client:
            answer = await client.chat.completions.create(
                model="reviewer",
                messages=[{"role": "user", "content": prompt}],
                response_format={"type": "json_schema", "json_schema": schema},
            )
        assert parse_structured_score(answer.choices[0].message.content or "") == expected
        async with anthropic_sdk.AsyncAnthropic(api_key="k", base_url=emu.url) as client:
            message = await client.messages.create(
                model="reviewer",
                max_tokens=400,
                messages=[{"role": "user", "content": prompt}],
                tools=[
                    {"name": "record_review_score", "description": "score", "input_schema": REVIEW_SCORE_JSON_SCHEMA}
                ],
                tool_choice={"type": "tool", "name": "record_review_score"},
            )
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use" and block.name == "record_review_score" and block.input["score"] == expected


@pytest.mark.anyio
async def test_anthropic_refuses_a_forced_score_tool_with_thinking_and_the_config_says_so_first(tmp_path, monkeypatch):
    # The emulator, like Anthropic, refuses thinking with a forced tool (400, not billed) ...
    request = msgspec.structs.replace(
        _review("claude-sonnet-4-5", True), temperature=None, max_tokens=400, reasoning=Reasoning(budget_tokens=1024)
    )
    async with (
        run_emulator(EmulatorSpec()) as emu,
        make_client("anthropic", api_key="k", base_url=emu.base_url("anthropic")) as client,
    ):
        with pytest.raises(Permanent, match="forces tool use"):
            await client.complete(request, timeout_s=10)
        assert emu.stats().total.completed == 0
    # ... so a structured run with a thinking Claude teacher stops at the config, naming it.
    monkeypatch.setenv("K", "x")
    path = tmp_path / "run.toml"
    teacher = '[[teachers]]\nname = "{n}"\nprovider = "{p}"\nmodel = "{m}"\napi_key_env = "K"\n'
    path.write_text(
        '[run]\nname = "s"\nout_dir = "run"\n[[datasets]]\ntask = "svamp"\n[review]\nstructured = true\n'
        + teacher.format(n="gpt", p="openai", m="gpt-4o")
        + teacher.format(n="claude", p="anthropic", m="claude-sonnet-4-5")
        + 'reasoning = "low"\n'
    )
    with pytest.raises(ConfigError, match=r"^\$\.teachers\[1\]: teacher 'claude' .*reasoning = \"off\"") as exc:
        check_teachers(load_config(path))
    assert "\n" not in str(exc.value)
    check_teachers(load_config(_without_thinking(path)))


def _without_thinking(path):
    off = path.with_name("off.toml")
    off.write_text(path.read_text().replace('reasoning = "low"', 'reasoning = "off"'))
    return off


@pytest.mark.anyio
async def test_switching_structured_decides_again_and_buys_only_the_reviews_once(tmp_path):
    mistakes = write_demo_mistakes(tmp_path / "svamp.json", load_split("svamp", "demo", "train")[:3])
    path = tmp_path / "run.toml"
    teachers = "".join(
        f'[[teachers]]\nname = "{p}"\nprovider = "{p}"\nmodel = "m-{p}"\nbase_url = "emulator"\n'
        "price_in_per_mtok = 1\nprice_out_per_mtok = 1\n"
        for p in ("openai", "gemini", "anthropic")
    )
    head = f'[run]\nname = "s"\nout_dir = "run"\n[[datasets]]\ntask = "svamp"\nmistakes = "{mistakes}"\n'

    async def bought(structured: bool) -> dict[str, int]:
        path.write_text(
            head + "[emulator]\nlatency_ms = 0\n" + teachers + f"[review]\nstructured = {str(structured).lower()}\n"
        )
        ctx = RunContext(path, load_config(path), progress=False)
        assert not (await run_job(ctx, "teach")).problems
        samples = [msgspec.json.decode(line) for line in (ctx.out_dir / "dataset.jsonl").read_bytes().splitlines()]
        assert {s["decided_with"].get("structured", False) for s in samples} == {structured}
        with sqlite3.connect(ctx.out_dir / "store.sqlite") as conn:
            rows = conn.execute("SELECT stage, COUNT(*) FROM calls WHERE status = 'completed' GROUP BY stage")
            return dict(rows.fetchall())

    plain = await bought(False)
    assert plain["review"] > 0 and plain["rationale"] == 9
    structured = await bought(True)
    # The switch decides the samples again: the same rationales and feedback, new (structured) reviews.
    assert structured == {**plain, "review": 2 * plain["review"]}
    # Neither setting buys anything twice.
    assert await bought(True) == structured
    assert await bought(False) == structured
