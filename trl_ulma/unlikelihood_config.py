from dataclasses import dataclass, field

from .losses import UNLIKELIHOOD_FORMS
from .pointwise_dpo_config import PointwiseDPOConfig


@dataclass
class UnlikelihoodConfig(PointwiseDPOConfig):
    r"""
    Configuration class for the [`UnlikelihoodTrainer`].

    Unlikelihood training, the baseline of the ULMA paper (arXiv 2312.02554): raise the likelihood of positives
    (score >= `positive_threshold`) and lower that of negatives, with no reference model. The data options of
    [`PointwiseDPOConfig`] apply; `beta` and `log_z` are unused. `reduction` defaults to `"per_group"` (mean over
    positives + mean over negatives, the authors' code).

    Parameters:
        unlikelihood_form (`str`, *optional*, defaults to `"sequence"`):
            `"sequence"`: -log pi(y|x) on positives, +log pi(y|x) on negatives (the ULMA authors' baseline; unbounded
            below). `"token"`: -log p_t on positive tokens, -log(1 - p_t) on negative tokens (Welleck et al., 2019;
            bounded). `length_normalize` makes both per-token means.
        min_prob_gap (`float`, *optional*, defaults to `1e-5`):
            Floor of 1 - p_t in the `"token"` form, so a negative token predicted with certainty costs -log(1e-5).
        precompute_ref_log_probs (`bool`, *optional*, defaults to `True`):
            Must stay `True`. The loss reads no reference log-prob, so none is computed; the flag is what tells
            [`~trl.DPOTrainer`] not to load a reference model.
    """

    reduction: str = field(
        default="per_group",
        metadata={
            "help": "'per_group': mean over positives + mean over negatives, or 'mean' over examples.",
            "choices": ["per_group", "mean"],
        },
    )
    unlikelihood_form: str = field(
        default="sequence",
        metadata={
            "help": "'sequence': -log pi on positives, +log pi on negatives (ULMA's baseline). 'token': -log p on "
            "positive tokens, -log(1 - p) on negative tokens (Welleck et al., 2019).",
            "choices": list(UNLIKELIHOOD_FORMS),
        },
    )
    length_normalize: bool = field(
        default=True,
        metadata={"help": "Per-token mean (True) or sum (False) of the log-probs in both terms."},
    )
    min_prob_gap: float = field(
        default=1e-5,
        metadata={"help": "Floor of 1 - p_t in the 'token' form."},
    )
    precompute_ref_log_probs: bool = field(
        default=True,
        metadata={"help": "Must stay True: no reference model is loaded and no reference log-prob is computed."},
    )

    _uses_beta = False

    def __post_init__(self):
        if self.unlikelihood_form not in UNLIKELIHOOD_FORMS:
            raise ValueError(
                f"`unlikelihood_form` must be one of {list(UNLIKELIHOOD_FORMS)}, got {self.unlikelihood_form!r}."
            )
        if not self.precompute_ref_log_probs:
            raise ValueError(
                "Unlikelihood training uses no reference model: leave `precompute_ref_log_probs=True`, which keeps "
                "DPOTrainer from loading one (nothing is computed)."
            )
        if self.sft_weight:
            raise ValueError(
                f"`sft_weight={self.sft_weight}` is point-wise DPO's; unlikelihood training's positives get their "
                "likelihood term already: leave sft_weight at 0."
            )
        super().__post_init__()
