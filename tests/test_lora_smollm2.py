"""LoRA on the real SmolLM2-135M-Instruct on CPU: trains, saves the adapter, and the eval backend generates with it."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from core.config import StudentSection, load_config
from trainer.recipe import train

pytestmark = pytest.mark.slow


def test_smollm2_lora_trains_saves_the_adapter_and_the_eval_backend_generates_with_it(smollm2_run) -> None:
    pytest.importorskip("peft")
    from student import make_backend
    from student.models import is_adapter_dir

    run_toml = smollm2_run(
        "smol-lora", 16,
        "[train]\nmax_steps = 3\nmicro_batch_size = 2\ngrad_accum = 1\nmax_length = 256\nlr = 1e-3\n\n"
        '[train.lora]\nr = 8\ntarget_modules = ["q_proj", "v_proj"]\n',
    )  # fmt: skip
    out = run_toml.parent
    result = train(load_config(run_toml))

    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and rows[-1]["loss"] < rows[0]["loss"]
    model = Path(result.model_dir)
    assert is_adapter_dir(model)
    # An adapter is a few hundred KB, not the 540 MB of the fp32 weights.
    assert (model / "adapter_model.safetensors").stat().st_size < 5_000_000

    backend = make_backend(StudentSection(backend="hf", greedy=True, max_new_tokens=16), model_path=model)

    async def answer() -> str:
        async for _, text in backend.generate(["Tom has 3 apples and buys 4 more. How many apples does he have?"]):
            return text
        return ""

    try:
        assert anyio.run(answer).strip()
    finally:
        anyio.run(backend.close)
