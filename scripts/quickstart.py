"""Offline quickstart: ULMA on a tiny model and toy point-wise data, with before/after figures on held-out rows.

    python scripts/quickstart.py [--trainer ulma|pointwise-dpo] [--steps 60] [--output_dir outputs/quickstart]

Nothing is downloaded: the tokenizer is trained locally and the two-layer model is built from a config. It shows the
API and that the model moves (positives up, negatives down relative to the reference) in well under a minute on a CPU.
"""

import argparse
import os

import torch
from transformers import AutoModelForCausalLM

from trl_ulma import PointwiseDPOConfig, PointwiseDPOTrainer, ULMAConfig, ULMATrainer
from trl_ulma.testing import build_tiny_model, build_tokenizer, toy_dataset


def held_out_figures(trainer, model, reference, dataset) -> dict[str, float]:
    """Mean log-prob of positive and negative completions and the implicit-reward margin and accuracy."""
    prepared = trainer._prepare_dataset(dataset, trainer.processing_class, trainer.args, "held-out")
    batch = trainer.data_collator(list(prepared))
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    mask = batch["completion_mask"][:, 1:]
    with torch.no_grad():
        logps = [
            (m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels, fused_lm_head=True)
             .log_probs * mask).sum(1) / mask.sum(1)
            for m in (model, reference)
        ]
    rewards = trainer.beta * (logps[0] - logps[1])
    positive = batch["score"] >= 1.0
    return {
        "logp positive": logps[0][positive].mean().item(),
        "logp negative": logps[0][~positive].mean().item(),
        "reward margin": (rewards[positive].mean() - rewards[~positive].mean()).item(),
        "reward accuracy": ((rewards > 0) == positive).float().mean().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainer", choices=["ulma", "pointwise-dpo"], default="ulma")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--output_dir", default="outputs/quickstart")
    options = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    tokenizer = build_tokenizer()
    model = build_tiny_model(tokenizer, hidden_size=64)
    trainer_class, config_class = {
        "ulma": (ULMATrainer, ULMAConfig), "pointwise-dpo": (PointwiseDPOTrainer, PointwiseDPOConfig)
    }[options.trainer]
    args = config_class(
        output_dir=options.output_dir, max_steps=options.steps, per_device_train_batch_size=8, learning_rate=2e-3,
        beta=1.0, logging_steps=10, use_cpu=True, bf16=False, gradient_checkpointing=False, report_to="none",
        save_strategy="no",
    )
    trainer = trainer_class(
        model=model, ref_model=build_tiny_model(tokenizer, hidden_size=64), args=args,
        train_dataset=toy_dataset(64, seed=0), processing_class=tokenizer,
    )
    held_out = toy_dataset(16, seed=1)
    before = held_out_figures(trainer, trainer.model, trainer.ref_model, held_out)
    trainer.train()
    after = held_out_figures(trainer, trainer.model, trainer.ref_model, held_out)

    print(f"\n{trainer_class.__name__}, {options.steps} steps, held-out rows: {len(held_out)}")
    print(f"{'metric':<18}{'before':>10}{'after':>10}")
    for key in before:
        print(f"{key:<18}{before[key]:>10.3f}{after[key]:>10.3f}")
    trainer.save_model(options.output_dir)
    print(f"model saved to {options.output_dir}")
    reloaded = AutoModelForCausalLM.from_pretrained(options.output_dir)
    assert reloaded.config.vocab_size == len(tokenizer)


if __name__ == "__main__":
    main()
