"""Train the trainers on a fixed row order under any launcher and print what they logged, one JSON line per case.

Run with `python` (one process) or `accelerate launch` (several ranks). Every case trains `STEPS` optimizer steps in
dataset order (sequential sampler), `--batch-size` rows per rank, and saves a checkpoint every `STEPS // 2` steps.
With 2 ranks x 2 rows, or 1 rank x 4 rows, global step t reads rows 4t..4t+3 (rank 0 the first two, rank 1 the last
two), and the labels of `ORDER` give a rank with no negatives, a rank with no positives and a step with no negatives
at all. Rank 0 prints `RESULT {...}` per case: the train log entries and the last checkpoint's path.

A case is a trainer name with optional modifiers, e.g. ``ulma``, ``pointwise_dpo+peft+precompute``, ``ulma+resume``:
    peft        LoRA adapters (the reference is the base model with adapters off)
    precompute  ``precompute_ref_log_probs=True``
    resume      stop at the first checkpoint, then resume from it with a fresh trainer
    accumulate  the rows of a step in 2 micro-batches (gradient accumulation)
"""

import argparse
import json
from pathlib import Path

from accelerate.state import AcceleratorState
from datasets import Dataset
from peft import LoraConfig
from transformers import PreTrainedTokenizerFast, TrainerCallback, set_seed

from trl_ulma import PointwiseDPOConfig, PointwiseDPOTrainer, ULMAConfig, ULMATrainer
from trl_ulma.testing import toy_rows


# Labels of the rows in training order, 4 per global step: "+" positive, "-" negative
ORDER = "++--" "++++" "+--+" "---+"
STEPS = len(ORDER) // 4
TRAINERS = {"ulma": (ULMATrainer, ULMAConfig), "pointwise_dpo": (PointwiseDPOTrainer, PointwiseDPOConfig)}
MODIFIERS = {"peft", "precompute", "resume", "accumulate"}


def ordered_dataset() -> Dataset:
    """Toy rows arranged so that their labels follow `ORDER`."""
    rows = toy_rows(2 * len(ORDER))
    pools = {True: [r for r in rows if r["label"]], False: [r for r in rows if not r["label"]]}
    return Dataset.from_list([pools[label == "+"].pop(0) for label in ORDER])


class StopAt(TrainerCallback):
    """Ends training after ``step``, as if the job had been killed right after saving that checkpoint."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def run_case(case: str, model: str, output_dir: Path, batch_size: int) -> dict:
    name, *modifiers = case.split("+")
    if name not in TRAINERS or not set(modifiers) <= MODIFIERS:
        raise ValueError(f"unknown case {case!r}")
    trainer_class, config_class = TRAINERS[name]
    accumulation = 2 if "accumulate" in modifiers else 1
    args = config_class(
        output_dir=str(output_dir / case), use_cpu=True, bf16=False, gradient_checkpointing=False, max_steps=STEPS,
        per_device_train_batch_size=batch_size // accumulation, gradient_accumulation_steps=accumulation,
        train_sampling_strategy="sequential",
        learning_rate=1e-2, logging_steps=1, save_strategy="steps", save_steps=STEPS // 2, report_to="none",
        seed=0, precompute_ref_log_probs="precompute" in modifiers,
    )
    peft_config = None
    if "peft" in modifiers:
        peft_config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM")

    def make_trainer(callbacks=None):
        AcceleratorState._reset_state()  # one process, several trainers: each builds its own DeepSpeed plugin
        set_seed(0)  # LoRA's random init must not depend on what ran before
        return trainer_class(
            model=model, args=args, train_dataset=ordered_dataset(), peft_config=peft_config,
            processing_class=PreTrainedTokenizerFast.from_pretrained(model), callbacks=callbacks,
        )

    trainer = make_trainer([StopAt(STEPS // 2)] if "resume" in modifiers else None)
    trainer.train()
    if "resume" in modifiers:
        assert trainer.state.global_step == STEPS // 2
        trainer = make_trainer()
        trainer.train(resume_from_checkpoint=str(output_dir / case / f"checkpoint-{STEPS // 2}"))
    plugin = trainer.accelerator.state.deepspeed_plugin
    return {
        "case": case,
        "main": trainer.is_world_process_zero(),
        "world_size": trainer.accelerator.num_processes,
        "engine": type(trainer.model_wrapped).__name__,
        "zero_stage": plugin.zero_stage if plugin else None,
        "logs": [entry for entry in trainer.state.log_history if "loss" in entry],
        "checkpoint": str(output_dir / case / f"checkpoint-{STEPS}"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="directory of a saved model and tokenizer")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--batch-size", type=int, required=True, help="rows per rank per optimizer step")
    parser.add_argument("cases", nargs="+")
    options = parser.parse_args()
    for case in options.cases:
        result = run_case(case, options.model, options.output_dir, options.batch_size)
        if result.pop("main"):
            print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
