"""The DPO stage on a tiny random Llama, on CPU: reference from the start model, preferences learned, saved once."""

from __future__ import annotations

import json
import math
from pathlib import Path

import msgspec
import pytest

from core.config import Config, load_config
from tests.test_preferences import sample
from tests.test_trainer import write_run
from trainer.dpo import train_dpo


def dpo_config(tmp_path: Path, model: Path, **dpo_keys) -> Config:
    path = write_run(tmp_path, model, records=2)
    samples = [sample(str(i), {"good": 5.0, "bad": 1.0}) for i in range(8)]
    (path.parent / "dataset.jsonl").write_bytes(b"".join(msgspec.json.encode(s) + b"\n" for s in samples))
    keys = {"micro_batch_size": 4, "lr": 1e-3, "warmup_ratio": 0.0, **dpo_keys}
    path.write_text(path.read_text() + "\n[dpo]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items()))
    return load_config(path)


def log_rows(cfg: Config) -> list[dict]:
    return [json.loads(line) for line in (cfg.out_dir / "dpo_log.jsonl").read_text().splitlines()]


def test_dpo_starts_at_log_2_learns_the_preferences_and_saves_once(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = dpo_config(tmp_path, tiny_model_dir, max_steps=6)
    result = train_dpo(cfg)

    rows = log_rows(cfg)
    assert len(rows) == 6 and result.steps == 6
    # Before the first update the policy is the reference: every implicit reward is 0.
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.1
    assert rows[-1]["reward_accuracy"] == 1.0 and rows[-1]["reward_margin"] > 0
    assert all(r["grad_norm"] > 0 and r["tokens_per_s"] > 0 for r in rows)
    assert (cfg.out_dir / "preferences.jsonl").is_file()
    assert (cfg.out_dir / "model_dpo" / "model.safetensors").is_file()

    assert train_dpo(cfg).skipped


def test_dpo_with_lora_saves_a_merged_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    pytest.importorskip("peft")
    cfg = dpo_config(tmp_path, tiny_model_dir, max_steps=2)
    config_path = tmp_path / "run" / "run.toml"
    config_path.write_text(config_path.read_text() + "\n[train.lora]\nr = 4\n")
    cfg = load_config(config_path)
    train_dpo(cfg)
    model_dir = cfg.out_dir / "model_dpo"
    assert (model_dir / "config.json").is_file() and (model_dir / "adapter" / "adapter_config.json").is_file()


def test_the_dpo_model_gets_its_own_eval_row_and_sft_stays_the_after(tmp_path: Path) -> None:
    from reports.run_report import run_report
    from tests.test_reports_run import _config

    evals = [dict(task="svamp", model="m", checkpoint=c, n=50, correct=k, accuracy=k / 50, ci_low=0.1, ci_high=0.9)
             for c, k in (("base", 10), ("model", 20), ("model_dpo", 22))]  # fmt: skip
    (tmp_path / "eval.json").write_text(json.dumps({"evals": evals}))
    report = run_report(tmp_path, _config(tmp_path))

    svamp = report.datasets[0]
    assert svamp.before.checkpoint == "base" and svamp.after.checkpoint == "model"
    assert "| model_dpo |" in (tmp_path / "report.md").read_text()
