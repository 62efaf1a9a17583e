"""`[run] log_to`: TensorBoard event files written by training and after teach, read back; loggers not installed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import msgspec
import pytest

from core.config import RunSection, load_config
from core.errors import ConfigError
from reports.run_report import run_report
from reports.teach_log import log_teach_metrics
from tests.test_reports_run import _config
from tests.test_trainer import write_run
from trainer.experiment_log import check_loggers
from trainer.recipe import train

pytest.importorskip("tensorboard")


def read_events(log_dir: Path):
    """TensorBoard's own reader over every event file in `log_dir`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def test_training_writes_the_named_scalars_and_the_config(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = write_run(tmp_path, tiny_model_dir, max_steps=3)
    path.write_text(path.read_text().replace("seed = 7\n", 'seed = 7\nlog_to = ["tensorboard"]\n'))
    cfg = load_config(path)
    train(cfg)

    events = read_events(cfg.out_dir / "tensorboard" / "train")
    names = {"train/loss", "train/loss_feedback", "train/loss_rationale", "train/lr", "train/grad_norm",
             "train/tokens_per_s"}  # fmt: skip
    assert names <= set(events.Tags()["scalars"])
    logged = [json.loads(line) for line in (cfg.out_dir / "train_log.jsonl").read_text().splitlines()]
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in logged], rel=1e-6)
    # The config rides along as text.
    config_text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert f'"out_dir": "{cfg.out_dir}"' in config_text


@pytest.mark.anyio
async def test_teach_metrics_come_from_the_store_after_the_stage(tmp_path: Path) -> None:
    from tests.test_ledger import _store

    await _store(tmp_path, events=[("stage_start", {"stage": "teach"}, -1), ("stage_end", {"stage": "teach"}, 20)])
    cfg = _config(tmp_path)
    cfg = msgspec.structs.replace(cfg, run=msgspec.structs.replace(cfg.run, log_to=("tensorboard",)))
    report = run_report(tmp_path, cfg)
    log_teach_metrics(cfg, report)

    events = read_events(tmp_path / "tensorboard" / "teach")
    tags = set(events.Tags()["scalars"])
    for teacher in ("a", "b"):
        assert {f"teach/{teacher}/calls_per_s", f"teach/{teacher}/rpm_limit_per_s", f"teach/{teacher}/rpm_used",
                f"teach/svamp/{teacher}/http_429", f"teach/svamp/{teacher}/usd",
                f"teach/svamp/{teacher}/acceptance"} <= tags  # fmt: skip
    assert {"teach/svamp/usd", "teach/svamp/usd_per_included"} <= tags
    rates = {t.teacher: t for t in report.teachers}
    assert events.Scalars("teach/b/rpm_used")[0].value == pytest.approx(rates["b"].rpm_used)
    assert {e.value for e in events.Scalars("teach/a/rpm_limit_per_s")} == {1.0}  # 60 rpm
    svamp = report.datasets[0].cost
    assert events.Scalars("teach/svamp/a/acceptance")[0].value == pytest.approx(svamp.acceptance["a"].rate)


def test_a_logger_that_is_not_installed_is_one_line_naming_the_key() -> None:
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(ConfigError, match=r"^\[run\]\.log_to: 'wandb' is not installed; pip install wandb"):
        check_loggers(("tensorboard", "wandb"))


def test_an_unknown_logger_is_a_config_error() -> None:
    with pytest.raises(msgspec.ValidationError, match="log_to"):
        msgspec.convert({"name": "x", "out_dir": "y", "log_to": ["mlflow"]}, RunSection)
