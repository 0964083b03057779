"""The ULMA paper's comparison: every method trained from the same base model on the same point-wise rows.

Each `train_*` function takes the base model (a path), the training rows (point-wise ``prompt``, ``completion``,
``label`` or ``score``, or DPO pairs), an output directory and config overrides (fields of the method's TRL config).
It derives the data its method needs from the rows, trains with the TRL trainer (ours for the point-wise methods),
saves the model, the tokenizer and the trainer state (its log history: the training curves) to the output directory,
and returns that directory.

Data each method sees, from the same rows (positives: score >= ``positive_threshold``):
    sft            the positives, as prompt-completion rows (`trl.SFTTrainer`, loss on the completion)
    reward_model   preference pairs: within a prompt, each completion against every lower-scored one
                   (`trl.RewardTrainer`)
    rlhf           the prompts, answered on-policy and scored by the reward model (`trl.RLOOTrainer`; or PPO,
                   `trl.experimental.ppo.PPOTrainer` of TRL 1.12 run in a separate environment: see `train_rlhf`)
    dpo            the preference pairs (`trl.DPOTrainer`)
    kto            every row, labelled desirable if positive (`trl.KTOTrainer`)
    unlikelihood, pointwise_dpo, ulma   the rows themselves (`trl_ulma` trainers)
Prompts with a single completion, or completions of equal scores, give no pair: the pairwise methods learn from
fewer rows, which is the point the paper makes for point-wise feedback.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trl
from datasets import Dataset
from transformers import AutoTokenizer, PreTrainedTokenizerBase
from trl import (
    DPOConfig,
    DPOTrainer,
    KTOConfig,
    KTOTrainer,
    RewardConfig,
    RewardTrainer,
    RLOOConfig,
    RLOOTrainer,
    SFTConfig,
    SFTTrainer,
)
from trl.data_utils import _tokenize

from .data import column_names, infer_score_type, prompt_key, to_pointwise
from .pointwise_dpo_config import PointwiseDPOConfig
from .pointwise_dpo_trainer import PointwiseDPOTrainer
from .ppo_runner import UNAVAILABLE
from .ulma_config import ULMAConfig
from .ulma_trainer import ULMATrainer
from .unlikelihood_config import UnlikelihoodConfig
from .unlikelihood_trainer import UnlikelihoodTrainer


RLHF_ALGORITHMS = ("rloo", "ppo")
PPO_PYTHON_ENV = "TRL_ULMA_PPO_PYTHON"
PPO_RUNNER = Path(__file__).with_name("ppo_runner.py")
PPO_SETUP = (
    "Build it with `bash scripts/setup_ppo_env.sh` (a separate virtual environment with TRL 1.12, the last release "
    f"with PPOTrainer) and set {PPO_PYTHON_ENV} to the Python it prints, or pass `ppo_python` (YAML: "
    "`methods.rlhf.ppo_python`)."
)


def rlhf_note(algorithm: str = "rloo") -> str:
    """What the RLHF baseline ran, for reports."""
    if algorithm == "ppo":
        return (
            "The RLHF baseline is a reward model + PPO: `trl.experimental.ppo.PPOTrainer` of TRL <= 1.12, run in a "
            f"separate environment since TRL {trl.__version__} has none (removed in TRL 1.13, huggingface/trl#7020); "
            "its value model starts from the reward model."
        )
    return (
        "The RLHF baseline is a reward model + RLOO (`trl.RLOOTrainer`, TRL's on-policy RL trainer with a reward "
        f"model and a KL penalty), not PPO: TRL {trl.__version__} has no PPOTrainer (removed in TRL 1.13, "
        "huggingface/trl#7020). `algorithm: ppo` runs PPO in a separate TRL 1.12 environment "
        "(`scripts/setup_ppo_env.sh`)."
    )


class PPOUnavailableError(RuntimeError):
    """No usable PPO environment: none configured, a missing Python, or one whose TRL has no PPOTrainer."""


# --------------------------------------------------------------------------------------------------------------------
# Data each method needs, derived from the point-wise rows
# --------------------------------------------------------------------------------------------------------------------
def scored_rows(dataset: Dataset) -> Dataset:
    """The rows validated and normalised to ``prompt``, ``completion``, ``score`` (labels 0.0/1.0; pairs unpaired)."""
    return to_pointwise(dataset, infer_score_type(column_names(dataset))).select_columns(
        ["prompt", "completion", "score"]
    )


def positives(dataset: Dataset, positive_threshold: float = 1.0) -> Dataset:
    """The positive rows as ``prompt``, ``completion``: SFT data."""
    rows = scored_rows(dataset)
    return rows.filter(lambda row: row["score"] >= positive_threshold).remove_columns("score")


def pair_indices(rows: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """(better, worse) row indices: within each prompt, every row against every lower-``score``d one."""
    groups: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(prompt_key(row["prompt"]), []).append(index)
    return [(i, j) for group in groups.values() for i in group for j in group if rows[i]["score"] > rows[j]["score"]]


def preference_pairs(dataset: Dataset) -> Dataset:
    """``prompt``, ``chosen``, ``rejected``: within each prompt, every completion against every lower-scored one."""
    rows = scored_rows(dataset).to_list()
    pairs = [
        {"prompt": rows[i]["prompt"], "chosen": rows[i]["completion"], "rejected": rows[j]["completion"]}
        for i, j in pair_indices(rows)
    ]
    if not pairs:
        raise ValueError("No prompt has two completions with different scores, so there is no preference pair.")
    return Dataset.from_list(pairs)


def unpaired_labels(dataset: Dataset, positive_threshold: float = 1.0) -> Dataset:
    """``prompt``, ``completion``, ``label`` (bool: score >= ``positive_threshold``): KTO's unpaired format."""
    rows = scored_rows(dataset)
    return rows.map(lambda row: {"label": row["score"] >= positive_threshold}, remove_columns="score")


def unique_prompts(dataset: Dataset) -> Dataset:
    """The distinct prompts, in order of first appearance, as a ``prompt`` column: on-policy RL data."""
    seen: dict[str, Any] = {}
    for prompt in scored_rows(dataset)["prompt"]:
        seen.setdefault(prompt_key(prompt), prompt)
    return Dataset.from_dict({"prompt": list(seen.values())})


# --------------------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------------------
def _finish(trainer, output_dir: str) -> str:
    trainer.train()
    trainer.save_model(output_dir)  # the model and its tokenizer
    trainer.save_state()  # trainer_state.json: the log history
    return output_dir


def train_sft(
    model: str, dataset: Dataset, output_dir: str, processing_class=None, positive_threshold: float = 1.0, **config
) -> str:
    """Supervised fine-tuning on the positives / demonstrations (`trl.SFTTrainer`)."""
    args = SFTConfig(output_dir=output_dir, **config)
    train = positives(dataset, positive_threshold)
    return _finish(SFTTrainer(model, args=args, train_dataset=train, processing_class=processing_class), output_dir)


def train_reward_model(model: str, dataset: Dataset, output_dir: str, processing_class=None, **config) -> str:
    """A Bradley-Terry reward model on the preference pairs (`trl.RewardTrainer`; a new scalar head on the model)."""
    args = RewardConfig(output_dir=output_dir, **config)
    trainer = RewardTrainer(
        model, args=args, train_dataset=preference_pairs(dataset), processing_class=processing_class
    )
    return _finish(trainer, output_dir)


def train_rlhf(
    model: str,
    dataset: Dataset,
    output_dir: str,
    reward_model: str,
    processing_class: PreTrainedTokenizerBase | None = None,
    reward_processing_class: PreTrainedTokenizerBase | None = None,
    algorithm: str = "rloo",
    ppo_python: str | None = None,
    **config,
) -> str:
    """On-policy RL from the base model against ``reward_model`` (a `train_reward_model` output).

    ``algorithm="rloo"`` (default): `trl.RLOOTrainer`; ``config`` are `RLOOConfig` fields.

    ``algorithm="ppo"``: TRL 1.13 removed PPOTrainer, so `trl_ulma/ppo_runner.py` runs TRL 1.12's
    `trl.experimental.ppo.PPOTrainer` in a separate environment: the Python ``ppo_python``, else
    ``$TRL_ULMA_PPO_PYTHON`` (``bash scripts/setup_ppo_env.sh`` builds it and prints it). ``config`` are that
    TRL's `PPOConfig` fields (``max_steps`` becomes ``total_episodes``, see the runner). The prompts are tokenized here
    as RLOO does (chat template with the generation prompt for conversations, the tokenizer's plain encoding for
    strings). The reward model is also the value model's start, and scores the policy's token ids directly, so it
    must share the policy's tokenizer (``reward_processing_class`` is only checked against it). Raises
    `PPOUnavailableError` (naming the fix) without a usable environment, `RuntimeError` with the end of the
    runner's output if PPO fails.
    """
    if algorithm not in RLHF_ALGORITHMS:
        raise ValueError(f"RLHF `algorithm` must be one of {RLHF_ALGORITHMS}, got {algorithm!r}.")
    if algorithm == "ppo":
        python = find_ppo_python(ppo_python)
        return _train_ppo(
            python, model, dataset, output_dir, reward_model, processing_class, reward_processing_class, config
        )
    args = RLOOConfig(output_dir=output_dir, **config)
    trainer = RLOOTrainer(
        model,
        reward_funcs=reward_model,
        args=args,
        train_dataset=unique_prompts(dataset),
        processing_class=processing_class,
        reward_processing_classes=reward_processing_class,
    )
    return _finish(trainer, output_dir)


def find_ppo_python(ppo_python: str | None = None) -> str:
    """The PPO environment's Python: ``ppo_python``, else ``$TRL_ULMA_PPO_PYTHON`` (a path or a command name).

    Raises `PPOUnavailableError`, naming the fix, when neither is set or the Python is not an executable file.
    """
    source = "`ppo_python`" if ppo_python else f"${PPO_PYTHON_ENV}"
    python = ppo_python or os.environ.get(PPO_PYTHON_ENV)
    if not python:
        raise PPOUnavailableError(
            f"RLHF `algorithm='ppo'` needs a Python environment with TRL <= 1.12 ("
            f"TRL {trl.__version__} has no PPOTrainer: removed in TRL 1.13, huggingface/trl#7020), and none is "
            f"configured. {PPO_SETUP}"
        )
    found = shutil.which(python)
    if found is None:
        raise PPOUnavailableError(
            f"The PPO Python {python!r} (from {source}) does not exist or is not executable. {PPO_SETUP}"
        )
    return found


def _local(path: str) -> str:
    """Local paths made absolute (the runner may resolve them elsewhere); Hub ids as given."""
    return str(Path(path).resolve()) if Path(path).exists() else str(path)


def _train_ppo(python, model, dataset, output_dir, reward_model, processing_class, reward_processing_class, config):
    tokenizer = processing_class or AutoTokenizer.from_pretrained(model)
    if reward_processing_class is not None and reward_processing_class.get_vocab() != tokenizer.get_vocab():
        raise ValueError("PPO scores the policy's token ids: the reward model must share the policy's tokenizer.")
    input_ids = [
        _tokenize(tokenizer, prompt, add_generation_prompt=True)["input_ids"]  # the flag applies to messages only
        for prompt in unique_prompts(dataset)["prompt"]
    ]

    with tempfile.TemporaryDirectory(prefix="trl_ulma_ppo_") as work:
        work = Path(work)
        tokenizer.save_pretrained(work / "tokenizer")
        with open(work / "prompts.jsonl", "w") as file:
            file.writelines(json.dumps({"input_ids": list(ids)}) + "\n" for ids in input_ids)
        spec = {
            "model": _local(model),
            "reward_model": _local(reward_model),
            "tokenizer": str(work / "tokenizer"),
            "prompts": str(work / "prompts.jsonl"),
            "output_dir": str(Path(output_dir).resolve()),
            "config": config,
        }
        (work / "spec.json").write_text(json.dumps(spec, indent=2))
        # -I: neither PYTHONPATH, the user site nor the runner's folder (this package) on the path; -u: unbuffered
        status, tail = _stream([python, "-I", "-u", str(PPO_RUNNER), "--spec", str(work / "spec.json")])
    if status == UNAVAILABLE:
        raise PPOUnavailableError(f"The PPO Python {python} cannot run PPO:\n{tail}\n{PPO_SETUP}")
    if status != 0:
        raise RuntimeError(f"PPO failed (exit status {status}, Python {python}); the end of its output:\n{tail}")
    return output_dir


def _stream(command: list[str], keep: int = 40) -> tuple[int, str]:
    """Run ``command``, echoing its output (stdout and stderr) to stderr; returns its status and last lines."""
    tail: deque[str] = deque(maxlen=keep)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as process:
        for line in process.stdout:
            sys.stderr.write(line)
            tail.append(line.rstrip("\r\n").rsplit("\r", 1)[-1])  # the last state of a progress bar
    return process.returncode, "\n".join(tail)


def train_dpo(model: str, dataset: Dataset, output_dir: str, processing_class=None, **config) -> str:
    """Pairwise DPO on the preference pairs (`trl.DPOTrainer`)."""
    args = DPOConfig(output_dir=output_dir, **config)
    trainer = DPOTrainer(model, args=args, train_dataset=preference_pairs(dataset), processing_class=processing_class)
    return _finish(trainer, output_dir)


def train_kto(
    model: str, dataset: Dataset, output_dir: str, processing_class=None, positive_threshold: float = 1.0, **config
) -> str:
    """KTO on every row, labelled desirable if positive (`trl.KTOTrainer`).

    The rows are shuffled first (seed ``args.seed``): KTO samples its batches in order, and converted pairs list their
    chosen rows before their rejected ones.
    """
    args = KTOConfig(output_dir=output_dir, **config)
    train = unpaired_labels(dataset, positive_threshold).shuffle(seed=args.seed)
    return _finish(KTOTrainer(model, args=args, train_dataset=train, processing_class=processing_class), output_dir)


def _train_pointwise(trainer_class, config_class, model, dataset, output_dir, processing_class, config) -> str:
    args = config_class(output_dir=output_dir, **config)
    return _finish(
        trainer_class(model, args=args, train_dataset=dataset, processing_class=processing_class), output_dir
    )


def train_unlikelihood(model: str, dataset: Dataset, output_dir: str, processing_class=None, **config) -> str:
    """Unlikelihood training on the point-wise rows (`UnlikelihoodTrainer`; no reference model)."""
    return _train_pointwise(
        UnlikelihoodTrainer, UnlikelihoodConfig, model, dataset, output_dir, processing_class, config
    )


def train_pointwise_dpo(model: str, dataset: Dataset, output_dir: str, processing_class=None, **config) -> str:
    """Point-wise DPO on the point-wise rows (`PointwiseDPOTrainer`)."""
    return _train_pointwise(
        PointwiseDPOTrainer, PointwiseDPOConfig, model, dataset, output_dir, processing_class, config
    )


def train_ulma(model: str, dataset: Dataset, output_dir: str, processing_class=None, **config) -> str:
    """ULMA on the point-wise rows (`ULMATrainer`)."""
    return _train_pointwise(ULMATrainer, ULMAConfig, model, dataset, output_dir, processing_class, config)
