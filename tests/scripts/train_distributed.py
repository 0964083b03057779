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
    eval        held-out rows (`EVAL_ROWS`, more than fill whole eval batches) evaluated before training, every 2
                steps during it (`eval_strategy="steps"`) and after it
    nolog       no logging step before the end (`logging_steps` > steps): only the final `train_loss` is logged
``--layout padded`` runs every case on padded batches instead of the trainers' default layout. In one process the
4 rows of a step come from 2 prompts (a positive and a negative of each), so the shared-prompt layout shares them.
"""

import argparse
import json
from pathlib import Path

import torch
from accelerate.state import AcceleratorState
from torch.distributed.fsdp import FSDPModule
from datasets import Dataset
from peft import LoraConfig
from transformers import PreTrainedTokenizerFast, TrainerCallback, set_seed

from trl_ulma.testing import toy_rows, trainer_classes


# Labels of the rows in training order, 4 per global step: "+" positive, "-" negative
ORDER = "++--" "++++" "+--+" "---+"
STEPS = len(ORDER) // 4
TRAINERS = trainer_classes()
MODIFIERS = {"peft", "precompute", "resume", "accumulate", "eval", "nolog"}
# Held-out labels, grouped as DPO pairs give them (all positives, then all negatives): 11 rows fill no whole batch
EVAL_ROWS = "++++++-----"


def ordered_dataset(order: str = ORDER, seed: int = 0) -> Dataset:
    """Toy rows arranged so that their labels follow ``order``."""
    rows = toy_rows(2 * len(order), seed=seed)
    pools = {True: [r for r in rows if r["label"]], False: [r for r in rows if not r["label"]]}
    return Dataset.from_list([pools[label == "+"].pop(0) for label in order])


class StopAt(TrainerCallback):
    """Ends training after ``step``, as if the job had been killed right after saving that checkpoint."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def fsdp_on_cpu() -> None:
    """Run an FSDP launch for real on CPU processes. accelerate picks FSDP only on GPU-like devices and runs the config
    as plain DDP on CPUs (distributed type MULTI_CPU); torch's `fully_shard` works over gloo, so every trainer's
    accelerator is switched to FSDP with the launcher's plugin (its settings come from the FSDP_* variables)."""
    import os

    import transformers.trainer
    from accelerate import Accelerator
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true" or torch.cuda.is_available():
        return

    class FSDPOnCPU(Accelerator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if self.state.distributed_type in (DistributedType.MULTI_CPU, DistributedType.FSDP):  # FSDP: set before
                # AcceleratorState copies PartialState's type whenever it is built again: set both
                PartialState._shared_state["distributed_type"] = DistributedType.FSDP
                self.state.distributed_type = DistributedType.FSDP
                self.state.fsdp_plugin = kwargs.get("fsdp_plugin") or FullyShardedDataParallelPlugin()

    transformers.trainer.Accelerator = FSDPOnCPU


def run_case(
    case: str, model: str, output_dir: Path, batch_size: int, eval_batch_size: int, layout: str | None
) -> dict:
    name, *modifiers = case.split("+")
    if name not in TRAINERS or not set(modifiers) <= MODIFIERS:
        raise ValueError(f"unknown case {case!r}")
    trainer_class, config_class = TRAINERS[name]
    accumulation = 2 if "accumulate" in modifiers else 1
    args = config_class(
        output_dir=str(output_dir / case), use_cpu=True, bf16=False, gradient_checkpointing=False, max_steps=STEPS,
        per_device_train_batch_size=batch_size // accumulation, gradient_accumulation_steps=accumulation,
        train_sampling_strategy="sequential",
        learning_rate=1e-2, logging_steps=STEPS + 1 if "nolog" in modifiers else 1, save_strategy="steps",
        save_steps=STEPS // 2, report_to="none", seed=0,
        per_device_eval_batch_size=eval_batch_size, eval_strategy="steps" if "eval" in modifiers else "no", eval_steps=2,
        # UnlikelihoodConfig keeps its own setting: it loads no reference model
        **({} if name == "unlikelihood" else {"precompute_ref_log_probs": "precompute" in modifiers}),
        **({} if layout is None else {"layout": layout}),
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
            eval_dataset=ordered_dataset(EVAL_ROWS, seed=7) if "eval" in modifiers else None,
        )

    trainer = make_trainer([StopAt(STEPS // 2)] if "resume" in modifiers else None)
    evals = [trainer.evaluate()] if "eval" in modifiers else []
    train_loss = trainer.train().training_loss
    evals += [entry for entry in trainer.state.log_history if "eval_loss" in entry and entry["step"] > 0]
    if "eval" in modifiers:
        evals.append(trainer.evaluate())
    if "resume" in modifiers:
        assert trainer.state.global_step == STEPS // 2
        trainer = make_trainer()
        trainer.train(resume_from_checkpoint=str(output_dir / case / f"checkpoint-{STEPS // 2}"))
    plugin = trainer.accelerator.state.deepspeed_plugin
    sharded = isinstance(trainer.model_wrapped, FSDPModule)  # torch's `fully_shard` ran on the model (FSDP2)
    return {
        "case": case,
        "main": trainer.is_world_process_zero(),
        "world_size": trainer.accelerator.num_processes,
        "engine": "FSDP2" if sharded else type(trainer.model_wrapped).__name__,
        "zero_stage": plugin.zero_stage if plugin else None,
        "logs": [entry for entry in trainer.state.log_history if "loss" in entry],
        "train_loss": train_loss,
        "final_log": trainer.state.log_history[-1],
        "evals": evals,
        "checkpoint": str(output_dir / case / f"checkpoint-{STEPS}"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="directory of a saved model and tokenizer")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--batch-size", type=int, required=True, help="rows per rank per optimizer step")
    parser.add_argument("--eval-batch-size", type=int, default=3, help="held-out rows per rank per eval batch")
    parser.add_argument("--layout", help="the trainers' `layout` (default: theirs)")
    parser.add_argument("cases", nargs="+")
    options = parser.parse_args()
    fsdp_on_cpu()
    for case in options.cases:
        result = run_case(
            case, options.model, options.output_dir, options.batch_size, options.eval_batch_size, options.layout
        )
        if result.pop("main"):
            print("RESULT " + json.dumps(result), flush=True)
    # What `trainer.end()` does at the end of the CLI and of TRL's scripts. A rank that exits with the group alive can
    # abort while gloo's threads are torn down ("terminate called without an active exception", SIGABRT), after a
    # run that succeeded: seen once in CI, on rank 1 of a ZeRO-1 launch
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
