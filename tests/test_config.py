"""Config loading: every mistake a user can make is one line naming the file and key."""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec
import pytest

from core.config import Config, ConfigError, api_key, load_config
from core.config_doc import DESCRIPTIONS, SECTIONS, config_keys, reference_markdown

if sys.version_info < (3, 11):  # the backport anyio installs there
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

ROOT = Path(__file__).resolve().parents[1]
BASE = '[run]\nname = "t"\nout_dir = "out"\n[[datasets]]\ntask = "svamp"\n'
TEACHER = '[[teachers]]\nname = "{name}"\nprovider = "{provider}"\nmodel = "m"\napi_key_env = "K_{name}"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def two_teachers(extra: str = "") -> str:
    return BASE + TEACHER.format(name="a", provider="openai") + TEACHER.format(name="b", provider="gemini") + extra


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BASE + "[run2]\nx = 1\n", "unknown field `run2`"),
        (BASE.replace('task = "svamp"', 'task = "svamp"\nlimt = 3'), "`limt` - at `$.datasets[0]`"),
        (BASE.replace('"svamp"', '"mmlu"'), "$.datasets[0].task"),
        (two_teachers().replace('"gemini"', '"cohere"'), "$.teachers[1].provider"),
        (two_teachers().replace('api_key_env = "K_a"', 'api_key_env = "K_a"\nrpm = "fast"'), "$.teachers[0].rpm"),
        (two_teachers() + TEACHER.format(name="a", provider="anthropic"), "teacher 'a' is listed twice"),
        (BASE + TEACHER.format(name="a", provider="openai"), "at least two teachers"),
        (two_teachers().replace('"gemini"', '"openai"'), "would send identical requests"),
        (two_teachers("[review]\nthreshold = 6\n"), "`threshold` must be within 1..5"),
        (two_teachers("[train]\nzero_stage = 4\n"), "`zero_stage` must be 0, 1, 2 or 3"),
        (BASE + '[[datasets]]\ntask = "svamp"\n', "task 'svamp' is listed twice"),
        ("[run\nname=", "not valid TOML"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_out_dir_that_is_a_file(tmp_path):
    (tmp_path / "out").write_text("not a dir")
    with pytest.raises(ConfigError, match=r"\$\.run\.out_dir: .* exists and is not a directory"):
        load_config(write(tmp_path, BASE))


def test_paths_resolve_relative_to_the_config(tmp_path):
    cfg = load_config(write(tmp_path, BASE.replace('task = "svamp"', 'task = "svamp"\nmistakes = "m.json"')))
    assert cfg.run.out_dir == str(tmp_path / "out")
    assert cfg.datasets[0].mistakes == str(tmp_path / "m.json")
    assert cfg.datasets[0].source == "demo"


def test_missing_api_key_names_teacher_and_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("K_a", raising=False)
    cfg = load_config(write(tmp_path, two_teachers()))
    with pytest.raises(ConfigError, match="teacher 'a': environment variable K_a is not set"):
        api_key(cfg.teachers[0])
    monkeypatch.setenv("K_a", "sk-secret")
    assert api_key(cfg.teachers[0]) == "sk-secret"


@pytest.mark.parametrize("name", ["demo", "paper", "cheap-modern", "local-llamacpp"])
def test_shipped_configs_load(name):
    cfg = load_config(ROOT / "configs" / f"{name}.toml")
    assert len(cfg.teachers) >= 2


def test_every_key_is_documented_and_readme_is_in_step():
    assert config_keys() == set(DESCRIPTIONS)
    top_level = {t.strip("[]") for t, _, _ in SECTIONS if "." not in t}  # [train.lora] is a table inside [train]
    assert {f.name for f in msgspec.inspect.type_info(Config).fields} == top_level
    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"
    assert readme[readme.index(start) + len(start) : readme.index(end)].strip() == reference_markdown().strip(), (
        "README's config reference is stale: regenerate it with `python -m core.config_doc`"
    )


def test_run_py_unwraps_project_errors_from_task_groups():
    sys.path.insert(0, str(ROOT))
    from committee.cli import _project_error

    inner = ConfigError("teacher 'a': environment variable K is not set")
    group = BaseExceptionGroup("tg", [ExceptionGroup("inner", [inner])])
    assert _project_error(group, ConfigError) is inner
    assert _project_error(ExceptionGroup("tg", [ValueError("x")]), ConfigError) is None


def test_an_empty_training_set_is_reported_not_trained(tmp_path):
    import anyio

    from stages.context import RunContext
    from stages.job import run_job

    cfg_path = write(tmp_path, two_teachers())
    ctx = RunContext(cfg_path, load_config(cfg_path), progress=False)
    ctx.prepare()
    (ctx.out_dir / "train.jsonl").write_text("")
    result = anyio.run(run_job, ctx, "train")
    assert [p.kind for p in result.problems] == ["nothing_to_train"]
    assert not (ctx.out_dir / "model").exists()
