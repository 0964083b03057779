from dataclasses import dataclass, field

from .losses import SFT_LOSS_TYPES
from .pointwise_dpo_config import PointwiseDPOConfig


@dataclass
class ULMAConfig(PointwiseDPOConfig):
    r"""
    Configuration class for the [`ULMATrainer`].

    ULMA (arXiv 2312.02554) trains in one step on one dataset: plain SFT on positive / demonstration examples
    (score >= `positive_threshold`) and the KL-regularised point-wise DPO term on negatives. All
    [`PointwiseDPOConfig`] parameters apply; `reduction` defaults to `"per_group"` (mean over positives + mean over
    negatives), the paper's E_{D+}[...] + E_{D-}[...] and the authors' code; `length_normalize` defaults to `True`
    (per-token means, as the authors' code) for labels and scores alike.

    Parameters:
        sft_loss_type (`str`, *optional*, defaults to `"nll"`):
            The term on positives. `"nll"`: -log pi(y|x) (ULMA). `"beta_nll"`: -beta * log pi(y|x). `"token_nll"`:
            token-level cross-entropy over all positive tokens of the batch. `"pointwise_dpo"`: the point-wise DPO term,
            which with `preference_balance=None` (and the same `reduction` and `length_normalize`) turns ULMA into
            point-wise DPO.
        preference_balance (`float` or `None`, *optional*, defaults to `0.25`):
            How hard negatives are pushed down relative to how hard positives are pulled up, at the start: the
            negatives' term is weighted so that a negative's initial gradient weighs `preference_balance` times a
            positive's (`trl_ulma.losses.balanced_preference_weight`). The push still fades as a negative falls below
            the reference, so beta sets how far negatives go and this sets how hard. `None` is the paper's plain sum
            of the two terms, where the share is beta / 2 (0.05 at beta = 0.1: ULMA then barely moves away from
            negatives). The default comes from `benchmarks/ulma_sensitivity.py` (docs/alignment-quality.md).
    """

    length_normalize: bool = field(
        default=True,
        metadata={"help": "Mean (True, the ULMA authors' code) or sum (False) of token log-probs per completion."},
    )
    reduction: str = field(
        default="per_group",
        metadata={
            "help": "'per_group': mean over positives + mean over negatives (ULMA), or 'mean' over examples.",
            "choices": ["per_group", "mean"],
        },
    )
    sft_loss_type: str = field(
        default="nll",
        metadata={
            "help": "Term on positives: 'nll' (ULMA), 'beta_nll', 'token_nll' or 'pointwise_dpo'.",
            "choices": list(SFT_LOSS_TYPES),
        },
    )
    preference_balance: float | None = field(
        default=0.25,
        metadata={
            "help": "A negative's initial gradient weight as a share of a positive's (the negatives' term is scaled to "
            "match). None: the paper's plain sum, where the share is beta/2."
        },
    )

    def __post_init__(self):
        if self.sft_loss_type not in SFT_LOSS_TYPES:
            raise ValueError(f"`sft_loss_type` must be one of {list(SFT_LOSS_TYPES)}, got {self.sft_loss_type!r}.")
        if self.preference_balance is not None and not self.preference_balance >= 0:
            raise ValueError(
                "`preference_balance` must be >= 0, or None for the paper's plain sum; "
                f"got {self.preference_balance!r}."
            )
        if self.sft_weight:
            raise ValueError(
                f"`sft_weight={self.sft_weight}` adds an SFT term to point-wise DPO's positives; ULMA trains its "
                "positives by SFT already (`sft_loss_type`): leave sft_weight at 0."
            )
        super().__post_init__()
