"""configs/paper.toml as the authors ran it: a dry run offline lists one student per benchmark."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from core.config import load_config
from stages.context import RunContext
from stages.forecast import dry_run

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "data" / "paper_prompts" / "records.json"


def _authors_logiqa_mistakes(path: Path) -> Path:
    """LogiQA mistakes in the authors' *_false_round0.json form (their train split is in no data folder)."""
    rows = json.loads(FIXTURES.read_text("utf-8"))["logiqa"]
    path.write_text(
        json.dumps(
            [
                {
                    "id": i,
                    "context": r["context"],
                    "question": r["query"],
                    "options": r["options"],
                    "gold_answer": str(r["correct_option"]),
                    "student_wrong_pred": r["student"],
                    "student_wrong_final_answer": "ABSOLUTE_WRONG_FINAL_ANS",
                }
                for i, r in enumerate(rows)
            ]
        )
    )
    return path


def test_paper_dry_run_offline_lists_four_students(tmp_path: Path, bench_data: Path) -> None:
    text = (ROOT / "configs" / "paper.toml").read_text()
    text = text.replace('out_dir = "../runs/paper"', f'out_dir = "{tmp_path / "run"}"')
    for task, hf in (
        ("gsm8k", "hf:openai/gsm8k:main"),
        ("svamp", "hf:ChilleD/SVAMP"),
        ("strategyqa", "hf:ChilleD/StrategyQA"),
    ):
        text = text.replace(f'source = "{hf}"', f'source = "{bench_data / task}"\nlimit = 20')
    mistakes = _authors_logiqa_mistakes(tmp_path / "Llama-2-7b-chat-hf_logiQA_false_round0.json")
    logiqa = f'source = "{bench_data / "logiqa"}"\nmistakes = "{mistakes}"'
    text = text.replace('source = "hf:lucasmccabe/logiqa"', logiqa)
    cfg_path = tmp_path / "paper.toml"
    cfg_path.write_text(text)
    cfg = load_config(cfg_path)
    assert (cfg.run.prompts, cfg.review.threshold, cfg.review.strict) == ("paper", 3.0, True)
    assert (cfg.train.lr_schedule, cfg.train.weight_decay, cfg.train.truncation_side) == ("constant", 0.01, "right")
    assert cfg.train.num_processes * cfg.train.micro_batch_size * cfg.train.grad_accum == 16

    console = Console(record=True, width=200)
    fc = dry_run(RunContext(cfg_path, cfg), console=console)
    printed = console.export_text()
    students = [line for line in printed.splitlines() if line.startswith("student ")]
    assert [s.split(":")[0] for s in students] == [f"student {t}" for t in ("gsm8k", "svamp", "strategyqa", "logiqa")]
    assert all("meta-llama/Llama-2-7b-chat-hf" in s and "/models/" in s for s in students)
    assert fc.usd > 0
