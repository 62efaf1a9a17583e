"""Shared fixtures: the asyncio backend, a skip for tests that need ../shared/data, tiny and SmolLM2 students."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def anyio_backend() -> str:
    # aiohttp is asyncio-only.
    return "asyncio"


@pytest.fixture
def shared_data() -> Path:
    """The benchmark files in ../shared/data; skips where a fresh clone has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the benchmark files in {SHARED_DATA} (absent in this checkout)")
    return SHARED_DATA


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
