"""What every stage of a run needs: the config, where it came from, and the run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.config import Config


@dataclass(frozen=True)
class RunContext:
    config_path: Path
    cfg: Config
    progress: bool = True

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.run.out_dir)

    @property
    def store_path(self) -> Path:
        return self.out_dir / "store.sqlite"

    def prepare(self) -> None:
        """Create the run directory."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
