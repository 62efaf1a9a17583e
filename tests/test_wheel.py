"""Packaging outside a checkout: the wheel holds every package and data file, installs into a fresh venv, and its
`committee` command forecasts a run from another directory, importing nothing from the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What a checkout holds besides its sources: git, .gitignore's build outputs, caches and runs.
_NOT_SOURCES = (
    ".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache", ".cache",
)  # fmt: skip

_CONFIG = """
[run]
name = "wheel"
out_dir = "run"

[[datasets]]
task = "svamp"
source = "demo"
limit = 8

[emulator]
answers = "fair"
""" + "".join(
    f'[[teachers]]\nname = "{name}"\nprovider = "{provider}"\nmodel = "emulated-{name}"\nbase_url = "emulator"\n'
    "rpm = 300\nprice_in_per_mtok = 0.5\nprice_out_per_mtok = 1.5\n"
    for name, provider in [("gpt", "openai"), ("claude", "anthropic")]
)


def _packages() -> list[str]:
    return sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name != "tests")


def _run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_wheel_installs_in_a_fresh_venv_and_its_command_forecasts_from_another_directory(tmp_path: Path) -> None:
    # A copy, so the build's build/ and *.egg-info stay out of the checkout (and stale files out of the wheel).
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*_NOT_SOURCES, "tests"))
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", tmp_path / "dist", src)  # fmt: skip
    [wheel] = (tmp_path / "dist").glob("committee-*.whl")

    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        str(path.relative_to(ROOT))
        for package in _packages()
        for path in (ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert shipped - in_wheel == set(), "files of the packages the wheel leaves out (pyproject's packages/package-data)"
    assert (
        "committee = committee.cli:main"
        in zipfile.ZipFile(wheel).read(next(n for n in in_wheel if n.endswith(".dist-info/entry_points.txt"))).decode()
    )

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "-q", "--python", python, "install", "--no-deps", "--no-index", wheel)
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    # The dependencies (torch and the rest) from this interpreter's site-packages, added after the wheel's own
    # install (pip would take the checkout's editable install there for this project otherwise). A plain path
    # line runs none of that folder's .pth files, so the editable install's import hook stays off.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    (tmp_path / "cfg").mkdir()
    elsewhere.mkdir()
    config = tmp_path / "cfg" / "run.toml"
    config.write_text(_CONFIG)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")} | {"COLUMNS": "200"}
    packages = ", ".join(_packages())
    where = _run(
        python, "-c", f"import {packages}; print(*(m.__file__ for m in ({packages},)))", cwd=elsewhere, env=env
    )
    assert all(Path(f).is_relative_to(site) for f in where.split()), where

    out = _run(venv / "bin" / "committee", "--config", config, "--dry-run", "--no-progress", cwd=elsewhere, env=env)
    assert "Dry run: the full run's calls" in out and "Total 48 calls" in out
    assert f"student: smollm2-135m-instruct -> {tmp_path / 'cfg' / 'run' / 'model'}" in out
    assert list(elsewhere.iterdir()) == [], "the command wrote into the directory it was started from"
