"""The training commands' flags: `ULMAScriptArguments` (the package's own), the parser that puts them beside TRL's
script, training and model flags (`trl.TrlParser`, `--config x.yaml`), the embedded default job's values, and the
short `--help`."""

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .formats import DATA_FORMATS


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


def own_options_first(parser, own: set[str]) -> None:
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


def command_parser(command: str, defaults: dict[str, Any]):
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
    own_options_first(parser, _own_options(config_class))
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
    ours = parser._action_groups[0]  # moved first by `own_options_first`
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


def explicit_keys(argv: list[str]) -> set[str]:
    """Option names the user set on the command line or in the `--config` YAML."""
    keys = {arg.lstrip("-").split("=")[0].replace("-", "_") for arg in argv if arg.startswith("-")}
    if "--config" in argv:
        config_path = argv[argv.index("--config") + 1]
        keys |= set((yaml.safe_load(Path(config_path).read_text()) or {}).keys())
    return keys


def command_defaults(command: str, explicit: set[str]) -> dict[str, Any]:
    import torch

    defaults: dict[str, Any] = {"output_dir": f"outputs/{command}", "report_to": "none"}
    if not torch.cuda.is_available() and not explicit & {"use_cpu", "bf16", "fp16"}:
        defaults |= {"use_cpu": True, "bf16": False}  # TRL defaults to bf16, which needs a GPU
    if not explicit & {"save_strategy", "save_steps"}:
        defaults["save_strategy"] = "no"  # the model is saved at the end; checkpoints (with optimizer) on request
    if not explicit & {"model_name_or_path", "dataset_name", "help", "h", "help_all"}:
        defaults |= {key: value for key, value in DEFAULT_JOB.items() if key not in explicit}
    return defaults


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


def parse_command(command: str, argv: list[str]) -> list:
    return parse_flags(command_parser(command, command_defaults(command, explicit_keys(argv))), command, argv)
