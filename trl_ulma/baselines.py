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
    rlhf           the prompts, answered on-policy and scored by the reward model (`trl.RLOOTrainer`)
    dpo            the preference pairs (`trl.DPOTrainer`)
    kto            every row, labelled desirable if positive (`trl.KTOTrainer`)
    unlikelihood, pointwise_dpo, ulma   the rows themselves (`trl_ulma` trainers)
Prompts with a single completion, or completions of equal scores, give no pair: the pairwise methods learn from
fewer rows, which is the point the paper makes for point-wise feedback.
"""

from typing import Any

import trl
from datasets import Dataset
from transformers import PreTrainedTokenizerBase
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

from .data import column_names, infer_score_type, prompt_key, to_pointwise
from .pointwise_dpo_config import PointwiseDPOConfig
from .pointwise_dpo_trainer import PointwiseDPOTrainer
from .ulma_config import ULMAConfig
from .ulma_trainer import ULMATrainer
from .unlikelihood_config import UnlikelihoodConfig
from .unlikelihood_trainer import UnlikelihoodTrainer


RLHF_NOTE = (
    f"TRL {trl.__version__} has no PPOTrainer (removed in TRL 1.13, huggingface/trl#7020), so the RLHF baseline is a "
    "reward model + RLOO (`trl.RLOOTrainer`, TRL's on-policy RL trainer with a reward model and a KL penalty), not PPO."
)


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


def preference_pairs(dataset: Dataset) -> Dataset:
    """``prompt``, ``chosen``, ``rejected``: within each prompt, every completion against every lower-scored one."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in scored_rows(dataset):
        groups.setdefault(prompt_key(row["prompt"]), []).append(row)
    pairs = [
        {"prompt": better["prompt"], "chosen": better["completion"], "rejected": worse["completion"]}
        for rows in groups.values()
        for better in rows
        for worse in rows
        if better["score"] > worse["score"]
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
    **config,
) -> str:
    """On-policy RL from the base model against ``reward_model`` (a `train_reward_model` output): `trl.RLOOTrainer`.

    ``algorithm="ppo"`` raises: see `RLHF_NOTE`.
    """
    if algorithm != "rloo":
        raise ValueError(f"RLHF `algorithm={algorithm!r}` is not available. {RLHF_NOTE}")
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
