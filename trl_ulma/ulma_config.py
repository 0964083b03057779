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
    negatives), the paper's E_{D+}[...] + E_{D-}[...] and the authors' code.

    Parameters:
        sft_loss_type (`str`, *optional*, defaults to `"nll"`):
            The term on positives. `"nll"`: -log pi(y|x) (ULMA). `"beta_nll"`: -beta * log pi(y|x). `"token_nll"`:
            token-level cross-entropy over all positive tokens of the batch. `"pointwise_dpo"`: the point-wise DPO term,
            which turns ULMA into point-wise DPO.
    """

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

    def __post_init__(self):
        if self.sft_loss_type not in SFT_LOSS_TYPES:
            raise ValueError(f"`sft_loss_type` must be one of {list(SFT_LOSS_TYPES)}, got {self.sft_loss_type!r}.")
        super().__post_init__()
