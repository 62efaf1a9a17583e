"""Sharing a run the Hugging Face way: the `hf_dataset/` export, model cards, and `[hub] push`.

Runs at the report stage, from files already written, so nothing here touches
teach or training. Pushing needs a token in `[hub] token_env` and a network; both
are checked (the token's presence, the packages) before a run spends anything,
and a failed push is one line saying where the files are. The push path is not
exercised by the tests (no Hub here and no local stand-in of its API).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from core.config import Config
from core.errors import ConfigError
from reports.run_report import RunReport

log = logging.getLogger(__name__)

TRAINED_DIRS = ("model", "model_dpo")


def check_hub(cfg: Config) -> None:
    """One-line `ConfigError` for a `[hub]` setting that cannot work here: a package missing, no token."""
    hub = cfg.hub
    if (hub.export_dataset or (hub.push and hub.dataset_repo)) and importlib.util.find_spec("datasets") is None:
        raise ConfigError("[hub].export_dataset needs the datasets package: pip install -e '.[hub]'")
    if not hub.push:
        return
    if importlib.util.find_spec("huggingface_hub") is None:
        raise ConfigError("[hub].push needs huggingface_hub: pip install -e '.[hub]'")
    if not os.environ.get(hub.token_env):
        raise ConfigError(
            f"[hub].push = true but ${hub.token_env} is not set; export a Hub token with write access "
            f"(or set push = false)"
        )


def share(cfg: Config, report: RunReport, *, export: bool) -> None:
    """Write model cards for the trained models; when `export`, also hf_dataset/ and the pushes `[hub]` asks for."""
    from reports.model_card import write_model_card
    from student.models import is_adapter_dir

    models = [cfg.out_dir / n for n in TRAINED_DIRS if (cfg.out_dir / n / "config.json").is_file()
              or is_adapter_dir(cfg.out_dir / n)]  # fmt: skip
    for model_dir in models:
        write_model_card(cfg, report, model_dir)
    if not export:
        return
    dataset_dir = None
    if cfg.hub.export_dataset or (cfg.hub.push and cfg.hub.dataset_repo):
        from reports.hf_dataset import export_dataset

        dataset_dir = export_dataset(cfg, report)
    if cfg.hub.push:
        _push(cfg, dataset_dir, cfg.out_dir / "model" if cfg.out_dir / "model" in models else None)


def _push(cfg: Config, dataset_dir: Path | None, model_dir: Path | None) -> None:
    """Upload the dataset (as parquet, with its card) and the model directory; untested here."""
    from huggingface_hub import HfApi

    hub = cfg.hub
    token = os.environ.get(hub.token_env)
    api = HfApi(token=token)
    try:
        if hub.dataset_repo and dataset_dir is not None:
            from datasets import load_from_disk

            load_from_disk(str(dataset_dir)).push_to_hub(hub.dataset_repo, token=token, private=hub.private)
            api.upload_file(path_or_fileobj=str(dataset_dir / "README.md"), path_in_repo="README.md",
                            repo_id=hub.dataset_repo, repo_type="dataset")  # fmt: skip
            log.info("pushed the dataset to %s", hub.dataset_repo)
        if hub.model_repo and model_dir is not None:
            api.create_repo(hub.model_repo, private=hub.private, exist_ok=True)
            api.upload_folder(folder_path=str(model_dir), repo_id=hub.model_repo)
            log.info("pushed the model to %s", hub.model_repo)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"[hub].push failed ({first}); the files are in {cfg.out_dir}; check the network and ${hub.token_env}, "
            f"then rerun with --stage report"
        ) from None
