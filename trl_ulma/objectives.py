"""What a method is: its loss and everything the trainer must know about it, in one object per method.

`PointwiseDPOTrainer` knows no method. Before anything is built it asks its objective class which rows need a
reference log-prob (`reference_scope`), whether the loss fits an implicit reward and so needs a baseline and a scale
(`fits_reward`), whether that fit covers every row (`logistic_on_every_row`: the unbalanced-labels warning) and what
the loss does when a group is missing (`without`). Once the targets are fitted it builds the objective
(`build(options, targets)`) and calls its `loss` on every batch. A new method is one objective and one config.
"""

from dataclasses import dataclass, fields
from typing import Any, ClassVar, NamedTuple

from .losses import (
    GroupCounts,
    LossOutput,
    balanced_preference_weight,
    pointwise_dpo_loss,
    ulma_loss,
    unlikelihood_loss,
)


class Targets(NamedTuple):
    """The targets fitted on the training scores once (`trl_ulma.fitting`): ``log_z`` (the config's constant plus the
    baseline's offset), the continuous ``score_scale`` (1 for labels), the scores' standard deviation and the mean
    score as the loss weighs the rows (the baseline of ``score_baseline="mean"`` and ``"prompt"``)."""

    log_z: float
    score_scale: float
    score_std: float
    mean_score: float


@dataclass(frozen=True, kw_only=True)
class Objective:
    """What every method shares: the fitted targets, the reduction and the split into positives and negatives."""

    targets: Targets
    reduction: str
    positive_threshold: float

    fits_reward: ClassVar[bool] = True
    logistic_on_every_row: ClassVar[bool] = True  # the labels' base rate matters: the fit covers the positives too
    token_level_positives: ClassVar[bool] = False  # positives' terms are token sums turned into a token mean
    # What the loss does on a training set with no positive (no negative) rows
    without: ClassVar[dict[str, str]] = dict.fromkeys(
        ("positive", "negative"), "only fits the implicit reward of one class, which pushes all completions one way."
    )

    @classmethod
    def build(cls, options: Any, targets: Targets) -> "Objective":
        """The objective with its fields read from ``options`` (a config, or a trainer's `options`)."""
        return cls(targets=targets, **{f.name: getattr(options, f.name) for f in fields(cls) if f.name != "targets"})

    @classmethod
    def missing_group_note(cls, options: Any, missing: str) -> str | None:
        """What the loss does on a training set with no ``missing`` ("positive" or "negative") rows, for a warning;
        None where nothing needs saying."""
        return cls.without[missing]

    @classmethod
    def reference_scope(cls, options, mode: str) -> str:
        """Rows whose reference log-prob the loss reads in training: ``"all"``, ``"negatives"`` or ``"none"``.
        Evaluation always scores every row (a forward without backward is cheap), so its reward metrics are complete."""
        return "all"


@dataclass(frozen=True, kw_only=True)
class PointwiseDPO(Objective):
    """Point-wise DPO: the implicit reward fitted to every row's label or score (`losses.pointwise_dpo_loss`)."""

    beta: float
    score_type: str
    sft_weight: float

    @classmethod
    def missing_group_note(cls, options: Any, missing: str) -> str | None:
        """Scores fitted around a baseline, every row weighing alike, need no positives or negatives: each row is
        pulled toward its own score's side of the baseline."""
        continuous = options.score_type == "continuous" and options.reduction == "mean"
        return None if continuous and options.score_baseline in ("mean", "prompt") else cls.without[missing]

    def loss(
        self, policy_logps, ref_logps, scores, token_logps, token_mask, counts: GroupCounts, log_z
    ) -> LossOutput:
        """The loss of one batch; ``log_z`` is the fitted constant or (B,) per row. The `LossOutput` carries the
        per-example ``terms`` (the metrics and `eval_loss` are made of them)."""
        return pointwise_dpo_loss(
            policy_logps,
            ref_logps,
            scores,
            beta=self.beta,
            score_type=self.score_type,
            log_z=log_z,
            reduction=self.reduction,
            positive_threshold=self.positive_threshold,
            counts=counts,
            score_scale=self.targets.score_scale,
            sft_weight=self.sft_weight,
        )


@dataclass(frozen=True, kw_only=True)
class ULMA(Objective):
    """ULMA: SFT on positives, the point-wise DPO term on negatives, weighted by ``preference_balance``
    (`losses.ulma_loss`)."""

    beta: float
    score_type: str
    sft_loss_type: str
    preference_balance: float | None

    logistic_on_every_row = False
    without = {
        "negative": "reduces to supervised fine-tuning on the positives.",
        "positive": "reduces to the point-wise DPO term on negatives alone (no demonstrations to learn from).",
    }

    @property
    def preference_weight(self) -> float:
        """The weight on the negatives' term: 1 for the paper's plain sum, else from ``preference_balance``."""
        if self.preference_balance is None:
            return 1.0
        # The typical negative: labelled 0, or one standard deviation of score below the baseline (`targets`)
        unit = self.targets.score_scale * self.targets.score_std
        weight = balanced_preference_weight(self.beta, self.score_type, self.sft_loss_type, self.targets.log_z, unit)
        return self.preference_balance * weight

    @classmethod
    def reference_scope(cls, options, mode: str) -> str:
        # The SFT term never reads the reference: training skips its forward on positives (eval keeps every row)
        return "negatives" if mode == "train" and options.sft_loss_type != "pointwise_dpo" else "all"

    @property
    def token_level_positives(self) -> bool:
        return self.sft_loss_type == "token_nll"

    def loss(
        self, policy_logps, ref_logps, scores, token_logps, token_mask, counts: GroupCounts, log_z
    ) -> LossOutput:
        return ulma_loss(
            policy_logps,
            ref_logps,
            scores,
            beta=self.beta,
            score_type=self.score_type,
            log_z=log_z,
            reduction=self.reduction,
            positive_threshold=self.positive_threshold,
            sft_loss_type=self.sft_loss_type,
            token_logps=token_logps,
            token_mask=token_mask,
            counts=counts,
            preference_weight=self.preference_weight,
            score_scale=self.targets.score_scale,
        )


@dataclass(frozen=True, kw_only=True)
class Unlikelihood(Objective):
    """Unlikelihood training: likelihood up on positives, down on negatives, no reference model
    (`losses.unlikelihood_loss`)."""

    unlikelihood_form: str
    length_normalize: bool
    min_prob_gap: float

    fits_reward = False  # no implicit reward, and so no baseline or scale
    logistic_on_every_row = False
    without = {
        "negative": "reduces to supervised fine-tuning on the positives.",
        "positive": "only lowers the likelihood of the negatives, with no demonstration to anchor the model.",
    }

    @classmethod
    def reference_scope(cls, options, mode: str) -> str:
        return "none"

    def loss(
        self, policy_logps, ref_logps, scores, token_logps, token_mask, counts: GroupCounts, log_z
    ) -> LossOutput:
        return unlikelihood_loss(
            policy_logps,
            scores,
            form=self.unlikelihood_form,
            reduction=self.reduction,
            positive_threshold=self.positive_threshold,
            token_logps=token_logps,
            token_mask=token_mask,
            length_normalize=self.length_normalize,
            min_prob_gap=self.min_prob_gap,
            counts=counts,
        )

