"""`trl-ulma reward-loop`: sample K answers per prompt, score them with reward functions, train ULMA or point-wise
DPO on the scores, repeat (`trl_ulma.reward_loop`). Reward flags as `trl grpo`'s: `--reward_funcs`,
`--reward_weights`, `--reward_model_name_or_path`, `--num_generations`.

With no `--dataset_name` and no reward it runs the embedded default job: the offline default model writes short movie
reviews (`trl_ulma.demo.review_prompts`) and VADER's sentiment (`trl_ulma.rewards.vader_sentiment`) scores them.
"""

import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml


# The embedded default job, sized for 2 CPU cores (each value overridable): 40 training and 40 held-out prompts, the
# strength and rate of the reward-KL frontier's `ulma_rounds_reward` (docs/reward-frontier.md)
DEFAULT_LOOP = {
    "reward_funcs": ["trl_ulma.rewards.vader_sentiment"],
    "eval_fraction": 0.5,
    "beta": 0.1,
    "learning_rate": 1e-5,
    "num_train_epochs": 2,
    "max_length": 192,
    "gradient_checkpointing": False,
    "logging_steps": 5,
}
DEFAULT_PROMPTS = 80
RESULT_COLUMNS = {  # results.json key: column title
    "samples/reward": "samples' reward",
    "eval/reward": "held-out reward",
    "eval/kl": "KL to initial",
    "eval/length": "length",
    "eval/eos": "ended",
    "eval/repetition": "repeated 3-grams",
}


# Flags of TRL's ScriptArguments and ModelConfig the loop reads; the others (PEFT, quantization, dtype, ...) stop it
USED_SCRIPT_FLAGS = {"dataset_name", "dataset_config", "dataset_train_split", "model_name_or_path", "config"}


def _trainer_of(argv: list[str]) -> str:
    """`--trainer` from the flags or the `--config` YAML, before parsing (it picks the config class; the parser
    checks the value)."""
    for i, arg in enumerate(argv):
        if arg.startswith("--trainer="):
            return arg.split("=", 1)[1]
        if arg == "--trainer" and i + 1 < len(argv):
            return argv[i + 1]
    if "--config" in argv and argv.index("--config") + 1 < len(argv):
        config = Path(argv[argv.index("--config") + 1])
        return ((yaml.safe_load(config.read_text()) if config.is_file() else None) or {}).get("trainer", "ulma")
    return "ulma"


def _refuse_unused(explicit: set[str], training_args) -> None:
    """A flag the loop would ignore stops it, in one line."""
    from trl import ModelConfig, ScriptArguments

    unused = {option.name for dataclass in (ScriptArguments, ModelConfig) for option in fields(dataclass)}
    unused = (unused - USED_SCRIPT_FLAGS) & explicit
    unused |= {"resume_from_checkpoint"} & explicit  # the loop resumes by itself, at the round and stage
    if unused:
        flags = ", ".join(f"--{name}" for name in sorted(unused))
        raise ValueError(
            f"trl-ulma reward-loop does not use {flags}: the loop trains the full model from "
            "--model_name_or_path and resumes a run in --output_dir by itself. Drop the flag(s)."
        )


def _parser(trainer: str, defaults: dict[str, Any]):
    from trl import ModelConfig, ScriptArguments, TrlParser

    from .cli_args import own_options_first
    from .reward_loop import TRAINERS, RewardLoopArguments

    config_class = TRAINERS.get(trainer, TRAINERS["ulma"])[1]
    parser = TrlParser(
        (ScriptArguments, config_class, ModelConfig, RewardLoopArguments),
        prog="trl-ulma reward-loop",
        usage="trl-ulma reward-loop [--dataset_name PROMPTS] [--reward_funcs F ...] [flags] [--config run.yaml]",
        description=__doc__,
        allow_abbrev=False,
    )
    parser.set_defaults(**defaults)
    own_options_first(parser, {option.name for option in fields(RewardLoopArguments)} | {"beta", "learning_rate"})
    return parser


def _prompts(script_args, loop_args):
    from .demo import review_prompts
    from .files import load_data

    if script_args.dataset_name is None:
        return review_prompts(DEFAULT_PROMPTS)
    prompts = load_data(script_args.dataset_name, script_args.dataset_config)[script_args.dataset_train_split]
    column = loop_args.prompt_column
    if column not in prompts.column_names:
        raise ValueError(
            f"--dataset_name {script_args.dataset_name}: no `{column}` column (columns: {prompts.column_names}). "
            "Pass the prompts' column with --prompt_column."
        )
    if column != "prompt":
        prompts = prompts.remove_columns([c for c in ("prompt",) if c in prompts.column_names])
        prompts = prompts.rename_column(column, "prompt")
    return prompts


def results_table(rounds: list[dict[str, Any]]) -> str:
    """Each round's figures, round 0 the initial model."""
    lines = [f"{'round':<7}" + "".join(f"{title:>18}" for title in RESULT_COLUMNS.values())]
    for metrics in rounds:
        cells = [metrics.get(key) for key in RESULT_COLUMNS]
        lines.append(f"{metrics['round']:<7}" + "".join(f"{'-' if v is None else f'{v:.4f}':>18}" for v in cells))
    return "\n".join(lines)


def run_reward_loop_command(argv: list[str]) -> int:
    """Parse the flags, run the rounds (resuming a run in --output_dir), print each round's figures."""
    from .cli_args import explicit_keys, parse_flags
    from .reward_loop import run_reward_loop
    from .rewards import load_reward_funcs

    explicit = explicit_keys(argv)
    defaults: dict[str, Any] = {"output_dir": "outputs/reward-loop", "report_to": "none"}
    if not explicit & {"dataset_name", "reward_funcs", "reward_model_name_or_path", "help", "h", "help_all"}:
        defaults |= {key: value for key, value in DEFAULT_LOOP.items() if key not in explicit}
    parser = _parser(_trainer_of(argv), defaults)
    script_args, training_args, model_args, loop_args = parse_flags(parser, "reward-loop", argv)
    _refuse_unused(explicit, training_args)
    if not loop_args.reward_funcs and loop_args.reward_model_name_or_path is None:
        raise ValueError("No reward: pass --reward_funcs (e.g. trl_ulma.rewards.vader_sentiment) and/or "
                         "--reward_model_name_or_path.")
    funcs = load_reward_funcs(loop_args.reward_funcs, loop_args.reward_model_name_or_path)

    model = model_args.model_name_or_path
    if model is None:
        from .default_models import default_model_path

        model = str(default_model_path())
    config_fields = {option.name for option in fields(type(training_args))} - {"output_dir", "seed"}
    training = {key: getattr(training_args, key) for key in explicit | set(defaults) if key in config_fields}
    if "report_to" not in explicit:
        training.pop("report_to")  # the loop's own default
    config = loop_args.to_config(training_args.output_dir, training, training_args.seed, explicit)
    logging.basicConfig(format="%(message)s")
    logging.getLogger("trl_ulma.reward_loop").setLevel(logging.INFO)
    result = run_reward_loop(
        model, _prompts(script_args, loop_args), funcs, loop_args.reward_weights, config,
        overwrite=loop_args.overwrite_output_dir,
    )
    print(f"\nreward loop on {model}: {config.rounds} rounds of {config.num_generations} samples per prompt, "
          f"{config.trainer}, reference: {config.reference} model")
    print(results_table(result["rounds"]))
    print(f"(KL to the initial model: sum over a sample's tokens of log pi - log pi_0, mean over held-out samples)\n"
          f"Rounds saved in {result['output_dir']}; the last policy: {result['model']}")
    return 0
