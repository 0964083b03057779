"""Offline quickstart: ULMA on a tiny model and toy point-wise data, with before/after figures on held-out rows.

    python scripts/quickstart.py [--trainer ulma|pointwise-dpo] [--steps 60] [--output_dir outputs/quickstart]

Nothing is downloaded: the tokenizer is trained locally and the two-layer model is built from a config. It shows the
API and that the model moves (positives up, negatives down relative to the reference) in well under a minute on a CPU.
"""

import argparse
import os

from transformers import AutoModelForCausalLM

from trl_ulma import PointwiseDPOConfig, PointwiseDPOTrainer, ULMAConfig, ULMATrainer
from trl_ulma.run_report import RowAccount, count_rows, summary
from trl_ulma.testing import build_tiny_model, build_tokenizer, toy_dataset


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
    train = toy_dataset(64, seed=0)
    # No ref_model: the reference is a frozen copy of the model as passed
    trainer = trainer_class(model=model, args=args, train_dataset=train, eval_dataset=toy_dataset(16, seed=1),
                            processing_class=tokenizer)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    account = count_rows(RowAccount("toy data", rows_read=len(train)), trainer, len(train))
    print(summary(trainer_class.__name__, "a tiny 2-layer model", account, before, after))
    trainer.save_model(options.output_dir)
    print(f"model saved to {options.output_dir}")
    reloaded = AutoModelForCausalLM.from_pretrained(options.output_dir)
    assert reloaded.config.vocab_size == len(tokenizer)


if __name__ == "__main__":
    main()
