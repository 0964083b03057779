"""The targets, fitted once on the prepared training scores: the baseline (``log_z``) and the continuous scale
(`trl_ulma.targets` holds the math), the warnings a missing group or unbalanced labels call for, and the per-row
``log_z`` column of ``score_baseline="prompt"``."""

import math
from typing import Any

from accelerate.logging import get_logger
from datasets import IterableDataset

from .objectives import Objective, Targets
from .targets import baseline_offset, loss_weighted_mean, prompt_baselines, resolve_scale, score_std


logger = get_logger(__name__)


def fit_targets(scores: list[float], options: Any, objective: type[Objective], trainer_name: str) -> Targets:
    """The `Targets` of ``objective`` on the training ``scores`` (``options``: the trainer's resolved config
    options). Warns when a group is missing and, as KTO does, when unbalanced labels meet the paper's baseline."""
    rows = len(scores)
    positives = sum(score >= options.positive_threshold for score in scores)
    missing = "positive" if positives == 0 else "negative"
    if positives in (0, rows) and (note := objective.missing_group_note(options, missing)):
        logger.warning(
            f"The training set has no {missing} examples (score {'>=' if missing == 'positive' else '<'} "
            f"positive_threshold={options.positive_threshold}): {trainer_name} {note}",
            main_process_only=True,
        )
    mean_score = loss_weighted_mean(scores, options.positive_threshold, options.reduction)
    targets = Targets(options.log_z, 1.0, score_std(scores), mean_score)
    if not objective.fits_reward:
        return targets

    score_scale = resolve_scale(options.score_scale, options.beta, scores) if options.score_type == "continuous" else 1
    baseline = mean_score if options.score_baseline in ("mean", "prompt") else options.score_baseline
    log_z = options.log_z
    if baseline != "none":
        log_z = options.log_z + baseline_offset(baseline, options.score_type, score_scale)
        logger.info(
            f"score_baseline={options.score_baseline!r}: baseline score {baseline:.4f}, log_z = {log_z:.4f}"
            + (f", score_scale = {score_scale:.4f}" if options.score_type == "continuous" else ""),
            main_process_only=True,
        )
    prior = sum(scores) / rows
    log_odds = baseline_offset(prior, "binary", 1.0)
    if (
        objective.logistic_on_every_row
        and options.score_type == "binary"
        and baseline == "none"
        and abs(log_odds) > math.log(2)
        and options.reduction == "mean"
        and options.log_z == 0
    ):
        logger.warning(
            f"Unbalanced labels: {positives} of {rows} training rows are positive (mean label "
            f"{prior:.2f}). With score_baseline='none' and log_z=0 the logistic fit pulls every "
            f"implicit reward toward the prior log-odds {log_odds:+.2f}, "
            f"{'below' if log_odds < 0 else 'above'} the reference for all completions alike, which the model "
            "reaches by moving what all answers share. Set "
            "score_baseline='mean' (log_z at the prior log-odds) or reduction='per_group' (each group weighted "
            "equally).",
            main_process_only=True,
        )
    return targets._replace(log_z=log_z, score_scale=float(score_scale))


def add_row_log_z(dataset, options: Any, targets: Targets):
    """``dataset`` with a ``log_z`` column: log_z plus each row's per-prompt baseline (`score_baseline='prompt'`;
    the dataset's own prompts, the training set's mean score counted as one more row: `targets.prompt_baselines`)."""
    if isinstance(dataset, IterableDataset) or "log_z" in dataset.column_names:
        return dataset
    prompts = [tuple(ids) for ids in dataset["prompt_ids"]]
    baselines = prompt_baselines(dataset["score"], prompts, targets.mean_score)
    offsets = [options.log_z + baseline_offset(b, options.score_type, targets.score_scale) for b in baselines]
    return dataset.add_column("log_z", offsets)
