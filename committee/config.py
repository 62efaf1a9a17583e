"""Configs in Python: a TOML file loaded, or a `Config` built in code checked, exactly as the command does."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from core.config import Config, checked_config
from core.errors import ConfigError
from stages.context import checked_run_config, load_run_config

# How errors name a Config that comes from no file.
BUILT_IN_CODE = "Config built in Python"


def load(path: str | os.PathLike[str]) -> Config:
    """The config at `path` (TOML, or JSON for a `.json` file), checked down to its prompt templates, with
    relative paths resolved against the file's folder: what `committee --config path` runs.

    Raises `ConfigError`, one line naming the file and the key.
    """
    return load_run_config(path)


def config_from(cfg: Config, *, base_dir: str | os.PathLike[str] | None = None) -> Config:
    """A checked copy of `cfg`, a Config built in code: types and values as decoding a file checks them, the
    checks across sections and on the prompt templates, relative paths resolved against `base_dir` (default:
    the working directory, a notebook's folder). `cfg` itself is left as it was.

    Raises `ConfigError`, one line naming the key:

        cfg = config_from(Config(run=RunSection(name="nb", out_dir="runs/nb"), datasets=[DatasetSection(task="svamp")],
                                 teachers=[...]))
    """
    try:
        # Through plain data and back: building a Struct checks no types, decoding does (and names the key).
        copy = msgspec.convert(msgspec.to_builtins(cfg, enc_hook=_path_as_str), Config)
    except (msgspec.ValidationError, TypeError) as exc:
        raise ConfigError(f"{BUILT_IN_CODE}: {exc}") from None
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    checked_config(copy, BUILT_IN_CODE, base.resolve())
    return checked_run_config(copy, BUILT_IN_CODE)


def _path_as_str(value: object) -> str:
    # A pathlib.Path where the Struct says str is what a notebook naturally writes; anything else is an error.
    path = os.fspath(value) if isinstance(value, os.PathLike) else None
    if isinstance(path, str):
        return path
    raise TypeError(f"a value of type {type(value).__name__} has no place in a Config")
