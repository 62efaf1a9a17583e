"""Shared fixtures: the asyncio backend, and a skip for tests that need ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def anyio_backend() -> str:
    # aiohttp and aiolimiter are asyncio-only.
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
