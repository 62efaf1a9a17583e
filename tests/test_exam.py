"""Exam and eval flows: grading, streaming, mistakes.jsonl, resume, eval.json, Wilson interval.

Answers are scripted through a stub backend (with the tiny model's real
tokenizer, so prompts are built exactly as in a run); one test lets the hf backend
really generate on the tiny random model end to end.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import anyio
import msgspec
import pytest

from core.config import StudentSection
from core.records import Mistake, Question
from prompts.messages import format_question
from prompts.student import resolve_format
from student import make_backend
from student.answers_store import AnswersStore
from student.backend import Sampling
from student.evaluate import EvalResult, run_eval, wilson_interval, write_eval_json
from student.exam import run_exam
from tasks import load_split


class StubBackend:
    """Answers each prompt with `script(prompt)`, one at a time, counting what it generated."""

    def __init__(self, tokenizer: object, script: Callable[[str], str], *, model_id: str = "stub", seed: int = 0):
        self._tokenizer = tokenizer
        self.script = script
        self.model_id = model_id
        self.sampling = Sampling(seed=seed)
        self.batch_size = 2
        self.generated = 0
        self.done = False

    @property
    def tokenizer(self) -> object:
        return self._tokenizer

    async def generate(self, prompts: Sequence[str]) -> AsyncIterator[tuple[int, str]]:
        self.done = False
        for i, prompt in enumerate(prompts):
            self.generated += 1
            yield i, self.script(prompt)
        self.done = True

    async def close(self) -> None:
        pass


def svamp(n: int = 6) -> list[Question]:
    return [
        Question(
            id=f"q{i}", task="svamp", question=f"Tom has {i} apples and gets {i} more. How many now?", gold=str(2 * i)
        )
        for i in range(1, n + 1)
    ]


def right_on_even(prompt: str) -> str:
    """Right answer for even i, wrong for odd i (reads i back from the question text)."""
    i = int(prompt.split("Tom has ")[1].split(" ")[0])
    return f"{i} + {i} = {2 * i}.\nThe answer is {2 * i if i % 2 == 0 else 2 * i + 1}."


@pytest.fixture
def tokenizer(tiny_model_dir: Path) -> object:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def store(tmp_path: Path) -> AnswersStore:
    with AnswersStore.open(tmp_path / "store.sqlite") as s:
        yield s


@pytest.mark.anyio
async def test_exam_writes_mistakes_and_streams_them_before_it_finishes(
    tokenizer: object, store: AnswersStore, tmp_path: Path
) -> None:
    backend = StubBackend(tokenizer, right_on_even)
    fmt = resolve_format("auto", tokenizer)
    # Unbuffered: each send waits for the receiver, so we see the exam's state at each mistake.
    send, recv = anyio.create_memory_object_stream[Mistake](max_buffer_size=0)
    received: list[tuple[str, bool]] = []
    summary = None

    async def exam() -> None:
        nonlocal summary
        summary = await run_exam(svamp(), backend, store, fmt, send=send, mistakes_path=tmp_path / "mistakes.jsonl")

    async with anyio.create_task_group() as tg:
        tg.start_soon(exam)
        async with recv:
            async for mistake in recv:
                received.append((mistake.id, backend.done))

    assert received == [("q1", False), ("q3", False), ("q5", True)]
    assert summary is not None
    assert (summary.n, summary.correct, summary.mistakes, summary.generated) == (6, 3, 3, 6)
    lines = [json.loads(line) for line in (tmp_path / "mistakes.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == ["q1", "q3", "q5"]
    assert set(lines[0]) == {"id", "task", "question", "gold", "student_answer", "student_final_answer"}
    assert lines[0]["question"] == "Tom has 1 apples and gets 1 more. How many now?"
    assert lines[0]["gold"] == "2"
    assert lines[0]["student_answer"] == "1 + 1 = 2.\nThe answer is 3."
    assert lines[0]["student_final_answer"] == "3"


@pytest.mark.anyio
async def test_rerun_generates_nothing_and_streams_every_mistake_again(
    tokenizer: object, store: AnswersStore, tmp_path: Path
) -> None:
    fmt = resolve_format("auto", tokenizer)
    first = StubBackend(tokenizer, right_on_even)
    await run_exam(svamp(4), first, store, fmt)
    # Two more questions: only those are generated; stored mistakes come first.
    again = StubBackend(tokenizer, right_on_even)
    send, recv = anyio.create_memory_object_stream[Mistake](max_buffer_size=16)
    summary = await run_exam(svamp(6), again, store, fmt, send=send, mistakes_path=tmp_path / "m.jsonl")
    async with recv:
        ids = [m.id async for m in recv]
    assert again.generated == 2
    assert ids == ["q1", "q3", "q5"]
    assert (summary.n, summary.mistakes, summary.generated) == (6, 3, 2)
    assert [json.loads(x)["id"] for x in (tmp_path / "m.jsonl").read_text().splitlines()] == ids


@pytest.mark.anyio
async def test_other_model_sampling_or_prompt_does_not_reuse_answers(tokenizer: object, store: AnswersStore) -> None:
    fmt = resolve_format("auto", tokenizer)
    await run_exam(svamp(3), StubBackend(tokenizer, right_on_even), store, fmt)
    for backend, layout in [
        (StubBackend(tokenizer, right_on_even, model_id="other"), fmt),
        (StubBackend(tokenizer, right_on_even, seed=1), fmt),
        (StubBackend(tokenizer, right_on_even), "instruction"),
    ]:
        await run_exam(svamp(3), backend, store, layout)
        assert backend.generated == 3
    same = StubBackend(tokenizer, right_on_even)
    await run_exam(svamp(3), same, store, fmt)
    assert same.generated == 0


@pytest.mark.anyio
async def test_answers_of_a_killed_exam_are_kept(tokenizer: object, tmp_path: Path) -> None:
    fmt = resolve_format("auto", tokenizer)

    def dies_at_q5(prompt: str) -> str:
        if "Tom has 5 " in prompt:
            raise RuntimeError("killed")
        return right_on_even(prompt)

    with AnswersStore.open(tmp_path / "store.sqlite") as store, pytest.raises(RuntimeError):
        await run_exam(svamp(6), StubBackend(tokenizer, dies_at_q5), store, fmt)
    with AnswersStore.open(tmp_path / "store.sqlite") as store:
        resumed = StubBackend(tokenizer, right_on_even)
        summary = await run_exam(svamp(6), resumed, store, fmt)
    assert resumed.generated == 2
    assert summary.mistakes == 3


@pytest.mark.anyio
async def test_logiqa_mistake_carries_context_and_options(
    tokenizer: object, store: AnswersStore, tmp_path: Path
) -> None:
    q = Question(
        id="l1",
        task="logiqa",
        question="Which follows?",
        gold="B",
        context="All cats sleep.",
        options=("Cats fly", "Cats sleep", "Dogs sleep", "None"),
    )
    # Answers A only when the prompt shows the options lettered, as format_question writes them.
    backend = StubBackend(tokenizer, lambda p: "A. Cats fly\nThe answer is A." if "B. Cats sleep" in p else "")
    await run_exam([q], backend, store, "chat", mistakes_path=tmp_path / "m.jsonl")
    line = json.loads((tmp_path / "m.jsonl").read_text())
    assert line["context"] == "All cats sleep."
    assert line["options"] == ["Cats fly", "Cats sleep", "Dogs sleep", "None"]
    assert line["student_final_answer"] == "A"


@pytest.mark.anyio
async def test_eval_json_shape_merge_and_wrong_predictions(
    tokenizer: object, store: AnswersStore, tmp_path: Path
) -> None:
    fmt = resolve_format("auto", tokenizer)
    base = await run_eval(svamp(6), StubBackend(tokenizer, right_on_even), store, fmt, checkpoint="base", model="tiny")
    trained = await run_eval(
        svamp(6),
        StubBackend(tokenizer, lambda p: "The answer is 2.", model_id="trained"),
        store,
        fmt,
        checkpoint="model",
        model="tiny",
    )
    path = tmp_path / "eval.json"
    write_eval_json(path, [base])
    write_eval_json(path, [trained])
    evals = json.loads(path.read_text())["evals"]
    assert [(e["checkpoint"], e["n"], e["correct"]) for e in evals] == [("base", 6, 3), ("model", 6, 1)]
    assert set(evals[0]) == {"task", "model", "checkpoint", "n", "correct", "accuracy", "ci_low", "ci_high"}
    assert evals[0]["accuracy"] == 0.5
    assert evals[0]["ci_low"] == pytest.approx(0.1876, abs=1e-3)
    assert evals[0]["ci_high"] == pytest.approx(0.8124, abs=1e-3)
    wrong = (tmp_path / "eval_wrong_svamp_base.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in wrong] == ["q1", "q3", "q5"]
    # Rerunning the same checkpoint replaces its entry instead of adding one.
    write_eval_json(path, [base])
    assert len(json.loads(path.read_text())["evals"]) == 2


def test_wilson_interval() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0) and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(0.7225, abs=1e-4) and high == pytest.approx(1.0)
    low, high = wilson_interval(81, 100)
    assert (low, high) == (pytest.approx(0.7222, abs=1e-4), pytest.approx(0.8749, abs=1e-4))


@pytest.mark.anyio
async def test_exam_and_eval_on_the_tiny_model_with_the_hf_backend(tiny_model_dir: Path, tmp_path: Path) -> None:
    section = StudentSection(model=str(tiny_model_dir), backend="hf", batch_size=2, max_new_tokens=4)
    backend = make_backend(section, seed=7)
    fmt = resolve_format(section.prompt_format, backend.tokenizer)
    train = load_split("svamp", "demo", "train", limit=3)
    test = load_split("svamp", "demo", "test", limit=3)
    with AnswersStore.open(tmp_path / "store.sqlite") as store:
        summary = await run_exam(train, backend, store, fmt, mistakes_path=tmp_path / "mistakes.jsonl")
        result = await run_eval(test, backend, store, fmt, checkpoint="base", model="tiny")
    await backend.close()
    assert (summary.n, summary.generated) == (3, 3)
    assert summary.mistakes == 3 - summary.correct
    lines = [msgspec.json.decode(x, type=Mistake) for x in (tmp_path / "mistakes.jsonl").read_bytes().splitlines()]
    gold = {q.id: q.gold for q in train}
    assert len(lines) == summary.mistakes
    assert all(m.gold == gold[m.id] and m.task == "svamp" for m in lines)
    assert isinstance(result, EvalResult) and result.entry.n == 3 and result.generated == 3


@pytest.mark.parametrize("task", ["gsm8k", "svamp", "strategyqa", "logiqa"])
@pytest.mark.anyio
async def test_grading_on_benchmark_lines(task: str, bench_data: Path, tokenizer: object, store: AnswersStore) -> None:
    questions = load_split(task, str(bench_data / task), "test", limit=4)
    gold = {q.id: q.gold for q in questions}
    wrong = {"true": "false", "false": "true", "A": "B", "B": "C", "C": "D", "D": "A"}
    right_ids = {questions[0].id, questions[2].id}

    def answer(prompt: str) -> str:
        # The prompt is built from the question; find which one by its text.
        q = next(q for q in questions if format_question(q) in prompt)
        final = q.gold if q.id in right_ids else wrong.get(q.gold, q.gold + "1")
        return f"Let me think step by step.\nThe answer is {final}."

    result = await run_eval(questions, StubBackend(tokenizer, answer), store, "chat", checkpoint="base", model="m")
    assert (result.entry.n, result.entry.correct) == (4, 2)
    assert {m.id for m in result.wrong} == set(gold) - right_ids
    assert all(m.student_final_answer != m.gold for m in result.wrong)


def test_exam_stage_alone_on_a_fresh_run_directory(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    """The exam leaves a store with only the student's answers; the reports written after it must cope."""
    import run

    cfg = tmp_path / "run.toml"
    cfg.write_text(
        '[run]\nname = "t"\nout_dir = "run"\n'
        '[[datasets]]\ntask = "svamp"\nsource = "demo"\nlimit = 2\n'
        f'[student]\nmodel = "{tiny_model_dir}"\nbackend = "hf"\nbatch_size = 2\nmax_new_tokens = 4\n'
        '[emulator]\nanswers = "fair"\n'
        + "".join(
            f'[[teachers]]\nname = "{n}"\nprovider = "openai"\nmodel = "m-{n}"\nbase_url = "emulator"\n'
            for n in ("a", "b")
        )
    )
    assert run.main(["--config", str(cfg), "--stage", "exam", "--no-progress"]) == 0
    assert (tmp_path / "run" / "mistakes.jsonl").exists() and (tmp_path / "run" / "report.md").exists()
    assert "Traceback" not in capsys.readouterr().err
