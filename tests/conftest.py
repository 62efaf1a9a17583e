"""Shared fixtures and helpers: the asyncio backend, benchmark-shaped data that ships with the repository,
an emulator per test, the FAIR teach-run config, tiny and SmolLM2 students.

Test modules import the helpers (`write_config`, `authors_file`, `read_samples`, `until_answered`, `TEACHERS`)
from here.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

if TYPE_CHECKING:
    from core.records import Question
    from core.samples import DecidedSample
    from emulator import AnswerFn, Emulator, EmulatorSpec

TESTS = Path(__file__).resolve().parent
FIXTURE_DATA = TESTS / "data" / "benchmarks"
# The full benchmark files: next to a checkout of this project (a bare clone has none), or where
# $COMMITTEE_SHARED_DATA says (a git worktree elsewhere).
SHARED_DATA = Path(os.environ.get("COMMITTEE_SHARED_DATA", TESTS.parents[1] / "shared" / "data"))
SVAMP_RECORDS = 1000  # SVAMP.json holds chal-1 .. chal-1000


@pytest.fixture
def anyio_backend() -> str:
    # aiohttp is asyncio-only.
    return "asyncio"


# ---------------------------------------------------------------- benchmark data


@pytest.fixture
def shared_data(request: pytest.FixtureRequest) -> Path:
    """The full benchmark files in ../shared/data, for the few tests whose point is the full files.

    Such a test says why with `@pytest.mark.full_data("reason")`; without the files it skips with that reason.
    """
    marker = request.node.get_closest_marker("full_data")
    reason = marker.args[0] if marker else "needs the full benchmark files"
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{reason}: needs the full benchmark files in {SHARED_DATA}, absent in this checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def bench_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder laid out like ../shared/data, from what ships in the repository.

    gsm8k/, strategyqa/ and logiqa/ are the synthetic records in tests/data/benchmarks (see its README).
    svamp/SVAMP.json is built here: the 80 demo questions (real SVAMP records, tasks/demo_data) at their
    original positions (`chal-N` is record N), synthetic SVAMP-shaped records everywhere else, so the
    paper's 70/30 recipe puts the demo questions at the head of its train and test splits, as in the full file.
    """
    folder = tmp_path_factory.mktemp("benchmarks")
    for task in ("gsm8k", "strategyqa", "logiqa"):
        shutil.copytree(FIXTURE_DATA / task, folder / task)
    (folder / "svamp").mkdir()
    (folder / "svamp" / "SVAMP.json").write_text(json.dumps(svamp_records()), encoding="utf-8")
    return folder


def svamp_records() -> list[dict[str, object]]:
    """SVAMP.json's 1000 records: the demo's real ones where they belong, seeded synthetic fillers around them."""
    demo = resources.files("tasks").joinpath("demo_data")
    real = {}
    for split in ("train", "test"):
        for row in json.loads(demo.joinpath(f"svamp_{split}.json").read_text("utf-8")):
            row = dict(row)
            del row["index"]  # the demo's own field; SVAMP.json has none
            real[int(str(row["ID"]).removeprefix("chal-"))] = row
    rng = random.Random(1000)
    return [real.get(n) or _svamp_filler(n, rng) for n in range(1, SVAMP_RECORDS + 1)]


def _svamp_filler(n: int, rng: random.Random) -> dict[str, object]:
    # `a` grows with n, so no two records ask the same question (a repeat would share its teacher calls).
    a, b = 10 + n, rng.randint(2, 9)
    kind = rng.choice(("Addition", "Subtraction", "Multiplication", "Common-Division"))
    body, question, equation, answer = {
        "Addition": (
            f"A shelf holds {a} books. Ann puts {b} more books on it.",
            "How many books are on the shelf?",
            f"( {a}.0 + {b}.0 )",
            a + b,
        ),
        "Subtraction": (
            f"A baker made {a + b} rolls and sold {b} of them.",
            "How many rolls are left?",
            f"( {a + b}.0 - {b}.0 )",
            a,
        ),
        "Multiplication": (
            f"Each of {b} boxes holds {a} marbles.",
            "How many marbles are there in all?",
            f"( {b}.0 * {a}.0 )",
            a * b,
        ),
        "Common-Division": (
            f"{a * b} stickers are shared equally among {b} children.",
            "How many stickers does each child get?",
            f"( {a * b}.0 / {b}.0 )",
            a,
        ),
    }[kind]
    return {
        "ID": f"chal-{n}",
        "Body": body,
        "Question": question,
        "Equation": equation,
        "Answer": float(answer),
        "Type": kind,
    }


# ---------------------------------------------------------------- the emulator and a FAIR teach run

StartEmulator = Callable[..., Awaitable["Emulator"]]


class ServesProviders(Protocol):
    """What `write_config` needs of an emulator: each provider's base_url."""

    def base_url(self, provider: str) -> str: ...


# (name, provider, model): one teacher per wire format.
TEACHERS = [
    ("gpt", "openai", "model-gpt"),
    ("gemini", "gemini", "model-gemini"),
    ("claude", "anthropic", "model-claude"),
]


@pytest.fixture
async def emulator() -> AsyncIterator[StartEmulator]:
    """`emu = await emulator(spec, answer_fn)`: a real emulator HTTP server on 127.0.0.1 (a free port) for
    this test, torn down after it; `spec` defaults to `EmulatorSpec()`. Needs an anyio test."""
    from emulator import EmulatorSpec, run_emulator

    async with AsyncExitStack() as stack:

        async def start(spec: EmulatorSpec | None = None, answer_fn: AnswerFn | None = None) -> Emulator:
            return await stack.enter_async_context(run_emulator(spec or EmulatorSpec(), answer_fn))

        yield start


async def until_answered(emu: Emulator, n: int, timeout_s: float = 60) -> None:
    """Return once `emu` has answered `n` requests; raise TimeoutError after `timeout_s`."""
    import anyio

    with anyio.fail_after(timeout_s):
        await emu.wait_for(lambda s: s.total.completed >= n)


def authors_file(path: Path, task: str, questions: Iterable[Question]) -> Path:
    """Write `questions` as the FAIR authors' *_false_round0.json (every one a mistake)."""
    rows = []
    for q in questions:
        gold = {"svamp": q.gold, "strategyqa": f"{q.gold}.\tSome facts."}[task]
        rows.append(
            {
                "id": int(q.id),
                "question": q.question,
                "gold_answer": gold,
                "student_wrong_pred": "I am not sure. The answer is 3.",
                "student_wrong_final_answer": "3",
            }
        )
    path.write_text(json.dumps(rows))
    return path


def write_config(
    tmp: Path,
    emu: ServesProviders,
    files: Mapping[str, Path],
    *,
    urls: Mapping[str, str] | None = None,
    teacher_extra: str = "",
    **review: object,
) -> Path:
    """`tmp/run.toml`: a teach run (out_dir `run`, seed 731) over the authors' mistake `files` per task, with the
    three TEACHERS on `emu` (or on `urls[name]`), each at 60000 RPM and priced $1 in, $2 out per million
    tokens, plus `teacher_extra` in every teacher and `review` as the [review] section."""
    lines = ['[run]\nname = "t"\nout_dir = "run"\nseed = 731\n']
    for task, f in files.items():
        lines.append(f'[[datasets]]\ntask = "{task}"\nmistakes = "{f}"\n')
    for name, provider, model in TEACHERS:
        lines.append(
            f'[[teachers]]\nname = "{name}"\nprovider = "{provider}"\nmodel = "{model}"\n'
            f'base_url = "{(urls or {}).get(name, emu.base_url(provider))}"\napi_key_env = "COMMITTEE_TEST_KEY"\n'
            "rpm = 60000\nprice_in_per_mtok = 1.0\nprice_out_per_mtok = 2.0\n" + teacher_extra
        )
    lines.append("[review]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in review.items()))
    path = tmp / "run.toml"
    path.write_text("\n".join(lines))
    return path


def read_samples(out_dir: Path) -> list[DecidedSample]:
    """The decided samples of a run's dataset.jsonl."""
    import msgspec

    from core.samples import DecidedSample

    decoder = msgspec.json.Decoder(DecidedSample)
    return [decoder.decode(line) for line in (out_dir / "dataset.jsonl").read_bytes().splitlines()]


# ---------------------------------------------------------------- students


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama + tokenizer directory, built once per test session."""
    from student.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def smollm2_run(tmp_path: Path) -> Callable[[str, int, str], Path]:
    """`smollm2_run(name, n_records, train_toml)`: a run.toml training the real SmolLM2-135M-Instruct.

    Its out_dir, `tmp_path / "run"`, holds `n_records` demo records as train.jsonl; `train_toml`
    is the config's `[train]` part. Returns the run.toml's path.
    """

    def make(name: str, n_records: int, train_toml: str) -> Path:
        import msgspec

        from bench.train import demo_train_records
        from student.models import resolve_model

        model_dir = resolve_model("smollm2-135m-instruct")
        out = tmp_path / "run"
        out.mkdir()
        (out / "train.jsonl").write_bytes(
            b"".join(msgspec.json.encode(r) + b"\n" for r in demo_train_records(n_records))
        )
        (out / "run.toml").write_text(
            f'[run]\nname = "{name}"\nout_dir = "{out}"\n\n[[datasets]]\ntask = "svamp"\n\n'
            f'[student]\nmodel = "{model_dir}"\n\n' + train_toml
        )
        return out / "run.toml"

    return make
