"""hf_dataset/ loads with datasets.load_from_disk and its card parses; model cards; [hub] refusals in one line."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from core.config import Config, HubSection
from core.errors import ConfigError
from dataset.preferences import write_preferences
from reports.hub import check_hub, share
from reports.run_report import run_report
from tests.test_preferences import sample
from tests.test_reports_run import _config
from tests.test_trainer_data import make_records, write_jsonl

pytest.importorskip("datasets")
yaml = pytest.importorskip("yaml")
pytestmark = pytest.mark.anyio


def card_header(path: Path) -> dict:
    text = path.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def with_hub(cfg: Config, **keys) -> Config:
    return msgspec.structs.replace(cfg, hub=HubSection(**keys))


async def test_the_export_loads_with_load_from_disk_and_its_card_parses(tmp_path: Path) -> None:
    from datasets import load_from_disk

    from tests.test_ledger import _store

    await _store(tmp_path, events=[("stage_start", {"stage": "teach"}, -1), ("stage_end", {"stage": "teach"}, 20)])
    samples = [sample("1", {"a": 5.0, "b": 2.0}), sample("2", {"a": 4.0, "b": None})]
    (tmp_path / "dataset.jsonl").write_bytes(b"".join(msgspec.json.encode(s) + b"\n" for s in samples))
    write_jsonl(tmp_path / "train.jsonl", make_records(3))
    write_preferences(tmp_path, min_margin=1.0)
    cfg = with_hub(_config(tmp_path), export_dataset=True)
    report = run_report(tmp_path, cfg)
    share(cfg, report, export=True)

    data = load_from_disk(str(tmp_path / "hf_dataset"))
    assert {name: len(split) for name, split in data.items()} == {"train": 3, "samples": 2, "preferences": 1}
    assert data["train"][0]["rationale"] == make_records(3)[0].rationale
    first = data["samples"][0]["rationales"][0]
    assert first["teacher"] == "a" and first["mean"] == 5.0
    assert data["preferences"][0]["chosen"][0]["role"] == "assistant"

    header = card_header(tmp_path / "hf_dataset" / "README.md")
    assert header["license"] == "mit"  # svamp and gsm8k are both MIT
    assert header["size_categories"] == ["n<1K"] and "text-generation" in header["task_categories"]
    card = (tmp_path / "hf_dataset" / "README.md").read_text()
    for expected in ("| a | openai | gpt-3.5-turbo", "USD per included sample", "arkilpatel/SVAMP (MIT)",
                     "teacher_rationale_math", "review_math"):  # fmt: skip
        assert expected in card
    svamp = report.datasets[0].cost
    assert f"| svamp | {svamp.samples} | {svamp.included} |" in card


async def test_model_cards_carry_base_model_hyperparameters_eval_intervals_and_cost(tmp_path: Path) -> None:
    from tests.test_ledger import _store

    await _store(tmp_path, events=[])
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    evals = [dict(task="svamp", model="m", checkpoint=c, n=100, correct=k, accuracy=k / 100, ci_low=(k - 9) / 100,
                  ci_high=(k + 10) / 100) for c, k in (("base", 40), ("model", 55))]  # fmt: skip
    (tmp_path / "eval.json").write_text(json.dumps({"evals": evals}))
    cfg = _config(tmp_path)
    share(cfg, run_report(tmp_path, cfg), export=False)

    path = tmp_path / "model" / "README.md"
    header = card_header(path)
    assert header["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and header["library_name"] == "transformers"
    card = path.read_text()
    assert "| svamp | model | 100 | 55.0% | 46.0% - 65.0% |" in card and "| svamp | base | 100 | 40.0%" in card
    assert '"lr": 1e-05' in card and "Teacher calls for the training data: $" in card
    assert not (tmp_path / "hf_dataset").exists()


def test_push_without_a_token_is_one_line_before_anything_runs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    cfg = with_hub(_config(tmp_path), push=True, model_repo="me/student")
    with pytest.raises(ConfigError, match=r"^\[hub\]\.push = true but \$HF_TOKEN is not set") as err:
        check_hub(cfg)
    assert "\n" not in str(err.value)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    check_hub(cfg)


def test_push_without_a_repo_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="dataset_repo"):
        HubSection(push=True)
