"""A short FAIR fine-tune of the real SmolLM2-135M-Instruct on CPU (slow: about a minute or two)."""

from __future__ import annotations

import json

import pytest

from core.config import load_config
from trainer.recipe import train


@pytest.mark.slow
def test_smollm2_fine_tune_lowers_the_loss_and_the_saved_model_generates(smollm2_run) -> None:
    # Micro-batch 2 and max_length 256 keep it near 6 GB on a shared 24 GB machine.
    run_toml = smollm2_run(
        "smol", 32,
        "[train]\nmax_steps = 4\nmicro_batch_size = 2\ngrad_accum = 1\nmax_length = 256\nlr = 3e-5\nzero_stage = 2\n",
    )  # fmt: skip
    out = run_toml.parent
    cfg = load_config(run_toml)
    result = train(cfg)

    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    assert rows[-1]["loss"] < rows[0]["loss"]

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prompts.student import question_prompt, resolve_format

    tokenizer = AutoTokenizer.from_pretrained(result.model_dir)
    model = AutoModelForCausalLM.from_pretrained(result.model_dir)
    question = "Tom has 3 apples and buys 4 more. How many apples does he have?"
    prompt = question_prompt(tokenizer, resolve_format("auto", tokenizer), "svamp", question)
    ids = tokenizer(prompt, return_tensors="pt")
    new = model.generate(**ids, max_new_tokens=24, do_sample=False)[0, ids["input_ids"].shape[1] :]
    assert tokenizer.decode(new, skip_special_tokens=True).strip()
