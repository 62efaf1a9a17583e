"""The two example tasks defined in configs/examples end to end through run.py, offline: exam, teach, train, eval.

The tiny random student stands in for SmolLM2 (it gets nearly everything wrong, which is what
the teachers need); the emulator's scripted teachers answer in each task's format, so their
rationales must be graded right by the task's answer type for any sample to be included.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import read_samples

ROOT = Path(__file__).resolve().parent.parent


def example(tmp: Path, name: str, student: Path) -> Path:
    """configs/examples/<name>.toml with its run in `tmp`, 12 exam questions, and the tiny student answering briefly."""
    text = (ROOT / "configs" / "examples" / f"{name}.toml").read_text()
    text = re.sub(r"(?m)^out_dir = .*$", 'out_dir = "run"', text)
    text = re.sub(r'(?m)^source = "\.\./\.\./', f'source = "{ROOT}/', text)
    text = re.sub(r'(?m)^model = "smollm2-135m-instruct"$', f'model = "{student}"', text)
    text = re.sub(r"(?m)^max_new_tokens = \d+$", "max_new_tokens = 8", text)
    text = re.sub(r"(?m)^(answer = .*)$", r"\1\nlimit = 12\ntest_limit = 4", text)
    path = tmp / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "final_line", "written"),
    [
        ("math_boxed", r"The answer is \\boxed\{.+\}\.$", "\\boxed{{{}}}"),
        ("mc5", r"The answer is \([A-E]\)\.$", "({})"),
    ],
)
def test_example_task_runs_exam_then_teach(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], name: str, final_line: str, written: str
) -> None:
    import run

    cfg = example(tmp_path, name, tiny_model_dir)
    for stage in ("exam", "teach", "train", "eval"):
        assert run.main(["--config", str(cfg), "--stage", stage, "--no-progress"]) == 0, capsys.readouterr().err
    out = tmp_path / "run"
    mistakes = [json.loads(line) for line in (out / "mistakes.jsonl").read_text().splitlines()]
    assert mistakes and {m["task"] for m in mistakes} == {name}
    samples = read_samples(out)
    assert len(samples) == len(mistakes) and all(not s.missing for s in samples)
    rationales = [r for s in samples for r in s.rationales]
    assert all(r.text and re.search(final_line, r.text) for r in rationales)
    # The scripted teachers state the gold answer on most questions and a wrong one on others:
    # the task's answer type must tell them apart.
    assert {r.answer_correct for r in rationales} == {True, False}
    for s in samples:
        for r in s.rationales:
            assert r.text is not None
            assert r.answer_correct == r.text.endswith(f"The answer is {written.format(s.gold)}."), r.text[-80:]
    train = (out / "train.jsonl").read_text().splitlines()
    assert train and all(json.loads(line)["task"] == name for line in train)
    # The student trained on them and both it and the base student sat the test split.
    evals = json.loads((out / "eval.json").read_text())["evals"]
    assert (out / "model").is_dir()
    assert sorted((e["task"], e["checkpoint"], e["n"]) for e in evals) == [(name, "base", 4), (name, "model", 4)]
    assert "Traceback" not in capsys.readouterr().err
