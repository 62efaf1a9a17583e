"""What every stage of a run needs: the config, where it came from, and the run directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.config import Config, load_config
from core.errors import ConfigError, DataError
from prompts.sets import check_config
from tasks.definitions import declare
from tasks.loaders import check_split_files


def load_run_config(path: str | os.PathLike[str]) -> Config:
    """The config at `path`, validated down to the prompt templates the run will render."""
    return checked_run_config(load_config(path), path)


def checked_run_config(cfg: Config, path: str | os.PathLike[str]) -> Config:
    """`cfg`, checked as a Config already, checked down to what the run will read: its tasks declared, each
    defined task's split files and field mapping, the prompt templates. Returns `cfg`.

    Raises ConfigError naming `path` (the config's file, or a label for one built in code) and the key.
    """
    declare(cfg.datasets)
    for i, d in enumerate(cfg.datasets):
        try:
            # Both splits now: the test split is otherwise first read at eval, after the teachers were paid.
            check_split_files(d.task, d.source)
        except DataError as exc:
            raise ConfigError(f"{path}: $.datasets[{i}]: {exc}") from None
    check_config(cfg, path)
    return cfg


@dataclass(frozen=True)
class RunContext:
    config_path: Path
    cfg: Config
    progress: bool = True

    def __post_init__(self) -> None:
        # The tasks the config defines get their meaning for this run (see tasks/definitions.py).
        declare(self.cfg.datasets)

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.run.out_dir)

    @property
    def store_path(self) -> Path:
        return self.out_dir / "store.sqlite"

    def prepare(self) -> None:
        """Create the run directory."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
