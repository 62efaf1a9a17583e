"""One student per benchmark (`[train] per_dataset`): its own records, `models/<task>/`, its own test split."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from core.config import load_config
from core.errors import ConfigError
from tests.test_trainer import write_run
from tests.test_trainer_data import make_records, write_jsonl
from trainer.recipe import train


def _two_task_run(tmp_path: Path, model: Path) -> Path:
    path = write_run(tmp_path, model, max_steps=2, per_dataset=True)
    text = path.read_text().replace(
        '[[datasets]]\ntask = "svamp"\n', '[[datasets]]\ntask = "svamp"\n\n[[datasets]]\ntask = "gsm8k"\n'
    )
    path.write_text(text)
    svamp = make_records(8)
    gsm8k = [msgspec.structs.replace(r, id=f"g{r.id}", task="gsm8k") for r in make_records(6)]
    write_jsonl(path.parent / "train.jsonl", svamp + gsm8k)
    return path


def test_each_benchmark_trains_its_own_student_on_its_own_records(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = load_config(_two_task_run(tmp_path, tiny_model_dir))
    results = {task: train(cfg, task=task) for task in ("svamp", "gsm8k")}
    for task, result in results.items():
        assert result.model_dir == str(cfg.out_dir / "models" / task)
        assert (cfg.out_dir / "models" / task / "config.json").is_file()
        assert (cfg.out_dir / f"train_log_{task}.jsonl").read_text().count("\n") == 2
    assert not (cfg.out_dir / "model").exists()
    # Each student is finished for its own inputs only.
    assert train(cfg, task="gsm8k").skipped


def test_students_train_one_after_another_in_one_process(tmp_path: Path, tiny_model_dir: Path) -> None:
    from trainer.launch import launch

    path = _two_task_run(tmp_path, tiny_model_dir)
    cfg = load_config(path)
    # Each launch tears its process group down; the next one must start clean (DeepSpeed caches groups).
    assert [launch(path, cfg, task=task) for task in ("svamp", "gsm8k")] == [0, 0]
    assert all((cfg.out_dir / "models" / t / "config.json").is_file() for t in ("svamp", "gsm8k"))


def test_eval_gives_each_task_its_own_student(tmp_path: Path, tiny_model_dir: Path) -> None:
    from stages.context import RunContext
    from stages.evaluate import per_dataset_model_dirs

    path = _two_task_run(tmp_path, tiny_model_dir)
    cfg = load_config(path)
    (cfg.out_dir / "models" / "gsm8k").mkdir(parents=True)
    (cfg.out_dir / "models" / "gsm8k" / "config.json").write_text(json.dumps({}))
    assert per_dataset_model_dirs(RunContext(path, cfg)) == {"gsm8k": cfg.out_dir / "models" / "gsm8k"}


def test_per_dataset_with_one_dataset_is_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"per_dataset: one student per benchmark needs two or more") as err:
        load_config(write_run(tmp_path, tiny_model_dir, per_dataset=True))
    assert "\n" not in str(err.value)


def test_a_hub_id_student_offline_is_one_line_saying_what_to_do(tmp_path: Path, monkeypatch) -> None:
    from student.models import resolve_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"nobody-here/no-such-model-7 is not in the Hugging Face cache") as e:
        resolve_model("nobody-here/no-such-model-7")
    assert "hf download nobody-here/no-such-model-7" in str(e.value) and "\n" not in str(e.value)
