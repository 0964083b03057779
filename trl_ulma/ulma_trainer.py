"""`ULMATrainer`: ULMA's one-step alignment (SFT on positives, point-wise DPO on negatives) as a `trl.DPOTrainer`."""

from .losses import GroupCounts, LossOutput, balanced_preference_weight, ulma_loss
from .pointwise_dpo_trainer import PointwiseDPOTrainer
from .ulma_config import ULMAConfig


class ULMATrainer(PointwiseDPOTrainer):
    """ULMA (arXiv 2312.02554): one step, one dataset, demonstrations and point-wise preferences together.

    Positives (score >= `positive_threshold`) get plain SFT, the negative log-likelihood with no KL regulariser;
    negatives get the KL-regularised point-wise DPO term. Everything else, data format included, is as in
    `PointwiseDPOTrainer`; the loss options are in `ULMAConfig`.

    Example:
    ```python
    >>> from trl_ulma import ULMAConfig, ULMATrainer
    >>> trainer = ULMATrainer(model="Qwen/Qwen2.5-0.5B-Instruct", args=ULMAConfig("out"), train_dataset=dataset)
    >>> trainer.train()
    ```
    """

    _tag_names = ["trl", "trl-ulma", "ulma"]
    _name = "ULMA"
    _logistic_on_every_row = False
    _config_class = ULMAConfig

    def _preference_weight(self) -> float:
        """The weight on the negatives' term: 1 for the paper's plain sum, else from `preference_balance`."""
        if self.preference_balance is None:
            return 1.0
        # The typical negative: labelled 0, or one standard deviation of score below the baseline (`targets`)
        unit = self._score_scale * self._score_std
        weight = balanced_preference_weight(self.beta, self.score_type, self.sft_loss_type, self._log_z, unit)
        return self.preference_balance * weight

    def _reference_scope(self, mode: str) -> str:
        # The SFT term never reads the reference: training skips its forward on positives (eval keeps every row)
        return "negatives" if mode == "train" and self.sft_loss_type != "pointwise_dpo" else "all"

    def _token_level_positives(self) -> bool:
        return self.sft_loss_type == "token_nll"

    def _loss(
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
            preference_weight=self._preference_weight(),
            score_scale=self._score_scale,
        )

    def _degenerate_note(self, missing: str) -> str:
        if missing == "negative":
            return "reduces to supervised fine-tuning on the positives."
        return "reduces to the point-wise DPO term on negatives alone (no demonstrations to learn from)."
