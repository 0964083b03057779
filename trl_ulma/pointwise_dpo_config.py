from dataclasses import dataclass, field, fields
from types import SimpleNamespace

from trl import DPOConfig

from .layout import LAYOUT_MODES
from .losses import REDUCTIONS, SCORE_TYPES
from .targets import BASELINES, parse_option


# DPOConfig options that only make sense for pairs, with their defaults: a point-wise trainer refuses other values
# rather than silently ignoring them.
PAIRWISE_ONLY_OPTIONS = {
    "loss_type": ["sigmoid"],
    "loss_weights": None,
    "ld_alpha": None,
    "use_weighting": False,
    "f_divergence_type": "reverse_kl",
    "label_smoothing": 0.0,
}


@dataclass
class PointwiseDPOConfig(DPOConfig):
    r"""
    Configuration class for the [`PointwiseDPOTrainer`].

    Point-wise DPO (ULMA paper, arXiv 2312.02554) fits DPO's implicit reward u = beta * log(pi / pi_ref) + log_z to a
    label or score per example: a logistic loss for binary labels, a squared loss for continuous scores. Every
    [`~trl.DPOConfig`] parameter keeps its meaning (`beta`, `max_length`, `precompute_ref_log_probs`, ...), except
    the pairwise-only loss options (`loss_type`, `loss_weights`, `ld_alpha`, `use_weighting`, `f_divergence_type`,
    `label_smoothing`), which must stay at their defaults.

    Parameters:
        > Defaults that differ from [`~trl.DPOConfig`]'s

        learning_rate (`float`, *optional*, defaults to `1e-5`):
            DPO's 1e-6 suits its summed log-probs; on per-token means (`length_normalize`) the gradients are about
            |y| times smaller, like SFT's (TRL's SFT default: 2e-5). 1e-5 is the ULMA authors' rate for ULMA and
            point-wise DPO (7B, LoRA); the 135M default job uses 3e-5 (measured). `max_length`
            (1024) and `gradient_checkpointing` (True) keep DPO's defaults, which are also the authors' settings.

        > Parameters that control the loss

        score_type (`str` or `None`, *optional*, defaults to `None`):
            `"binary"`: labels in [0, 1] (soft labels allowed), logistic loss. `"continuous"`: real-valued scores,
            squared loss. `None` infers it from the data: a `label` column or paired rows mean binary, a `score`
            column means continuous.
        log_z (`float`, *optional*, defaults to `0.0`):
            Constant added to beta * log(pi / pi_ref); it stands for beta * log Z(x). The paper argues Z(x) ~ 1, so 0.
            The baseline (`score_baseline`) is added to it.
        score_baseline (`str`, *optional*, defaults to `"mean"`):
            The score an answer must beat to be raised above the reference, i.e. the estimate of beta * log Z(x)
            (`trl_ulma.targets`). `"mean"`: the training set's mean score as the loss weighs the rows, i.e. where an
            uninformed fit lands. With `reduction="mean"` that is the mean over all rows, so for labels log_z holds
            the prior log-odds and unbalanced labels do not pull every answer one way; with `"per_group"`, halfway
            between the two groups' means (0.5 for labels: log_z = 0). `"prompt"`: the mean score of each prompt's
            own rows (with the overall mean counted as one more row), the overall mean for a prompt rated once. A
            number, in score units. `"none"`: the paper's (baseline 0 for scores, 0.5 for labels). On balanced
            labels `"mean"` is the paper's log_z = 0.
        score_scale (`str`, *optional*, defaults to `"auto"`):
            Continuous scores: the reward of a score z is `score_scale * z`. `"auto"`: beta / std(training scores),
            so one standard deviation asks for one nat of log-ratio (per token with `length_normalize`); a number as
            given (1.0 is the paper's, which for scores in [0, 1] asks for up to 1 / beta nats: out of reach).
        length_normalize (`bool` or `None`, *optional*, defaults to `None`):
            Whether a completion's log-prob is the mean over its tokens (what the ULMA authors' code does, and so the
            setting behind the paper's results) or their sum (what TRL's DPO and KTO do). `None`: the sum for labels
            (`score_type="binary"`), the mean for continuous scores. A label 0 asks the logistic loss for an
            unbounded push, which fades only as beta * log-ratio falls well below 0: on the sum, once the tokens that
            made the answer bad are unlikely; on the mean, only once the answer's average token is, so the push
            drags down the tokens every answer shares (`benchmarks/lr_sweep.py`: at learning rates from 3e-4 the
            mean leaves fewer well-formed answers than KTO, the sum as many or more). A continuous score asks for a
            finite target, one nat per standard deviation with `score_scale="auto"`: per token on the mean, per
            answer (too small to move it) on the sum.
        reduction (`str`, *optional*, defaults to `"mean"`):
            `"mean"`: mean of the per-example losses (the expectation in the paper's equation). `"per_group"`: mean
            over positives + mean over negatives (the authors' code); a group absent from a batch adds 0.
        positive_threshold (`float`, *optional*, defaults to `1.0`):
            Examples with score >= this value are positives (logged as `chosen`); the rest are negatives.
        sft_weight (`float`, *optional*, defaults to `0.0`):
            Adds `sft_weight * -log pi(y|x)` (per token with `length_normalize`) to each positive's term, as TRL
            DPO's `loss_type=["sigmoid", "sft"]` (RPO) does: a pull on positives that does not fade as their reward
            grows. 0 is the paper's loss. It keeps answers well-formed at high learning rates but slows the harm
            reduction at low ones (`benchmarks/lr_sweep.py`).

        > Parameters that control the batch layout

        layout (`str`, *optional*, defaults to `"shared_prompt"`):
            How a batch's rows are laid out for the forwards (`trl_ulma.layout`); every layout gives the same
            log-probs, losses and gradients to float rounding. `"padded"`: one right-padded row per example.
            `"padding_free"`: rows packed back to back, each attending to itself only. `"shared_prompt"`: also the
            rows of one prompt share one copy of it, and the training sampler keeps a prompt's rows together (with
            `train_sampling_strategy="random"`). Models whose attention cannot take a packed layout (not sdpa, eager
            or flex_attention, sliding windows, recurrent layers) fall back to `"padded"` with a warning. `padding_free=True`
            (TRL's option, disabled in its DPOTrainer) turns `"padded"` into `"padding_free"` and keeps the packed
            layouts as they are.
    """

    learning_rate: float = field(
        default=1e-5,
        metadata={
            "help": "Initial AdamW learning rate. 1e-5 (not DPO's 1e-6): the ULMA authors' rate; on per-token means "
            "(length_normalize) the gradients are about |y| times smaller, like SFT's."
        },
    )
    score_type: str | None = field(
        default=None,
        metadata={
            "help": "'binary' (labels in [0, 1], logistic loss) or 'continuous' (scores, squared loss). Inferred from "
            "the data when unset: `label` or paired rows -> binary, `score` -> continuous.",
            "choices": [None, *SCORE_TYPES],
        },
    )
    log_z: float = field(
        default=0.0,
        metadata={"help": "Constant standing for beta * log Z(x), added to the implicit reward."},
    )
    score_baseline: str = field(
        default="mean",
        metadata={
            "help": "The score at which an answer stays at the reference (beta * log Z(x)): 'mean' (training set; for "
            "labels the prior log-odds), 'prompt' (each prompt's mean), a number, or 'none' (the paper's)."
        },
    )
    score_scale: str = field(
        default="auto",
        metadata={
            "help": "Continuous scores: reward = score_scale * score. 'auto': beta / std(scores), so one standard "
            "deviation asks for one nat of log-ratio; a number (1.0: the paper's)."
        },
    )
    length_normalize: bool | None = field(
        default=None,
        metadata={
            "help": "Mean (True, the ULMA authors' code) or sum (False, TRL DPO) of token log-probs per completion. "
            "Unset: the sum for labels, the mean for continuous scores."
        },
    )
    reduction: str = field(
        default="mean",
        metadata={
            "help": "'mean' over examples, or 'per_group': mean over positives + mean over negatives.",
            "choices": list(REDUCTIONS),
        },
    )
    positive_threshold: float = field(
        default=1.0,
        metadata={"help": "Examples with score >= this value are positives."},
    )
    sft_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of an SFT term (-log pi) on positives, added to the point-wise term; 0: none."},
    )

    layout: str = field(
        default="shared_prompt",
        metadata={
            "help": "Batch layout for the forwards: 'shared_prompt' (packed, one copy of each prompt), 'padding_free' "
            "(packed) or 'padded'. All give the same results; models that cannot take a packed layout fall back.",
            "choices": list(LAYOUT_MODES),
        },
    )

    _uses_beta = True  # the unlikelihood baseline has no implicit reward

    def __post_init__(self):
        if self._uses_beta and not self.beta > 0:
            raise ValueError(f"`beta` must be > 0 (it scales the implicit reward), got {self.beta}.")
        if self.score_type is not None and self.score_type not in SCORE_TYPES:
            raise ValueError(f"`score_type` must be one of {[None, *SCORE_TYPES]}, got {self.score_type!r}.")
        self.score_baseline = parse_option("score_baseline", self.score_baseline, BASELINES)
        self.score_scale = parse_option("score_scale", self.score_scale, ("auto",))
        if self.score_scale != "auto" and not self.score_scale > 0:
            raise ValueError(f"`score_scale` must be 'auto' or > 0, got {self.score_scale!r}.")
        if self.layout not in LAYOUT_MODES:
            raise ValueError(f"`layout` must be one of {list(LAYOUT_MODES)}, got {self.layout!r}.")
        if self.padding_free:  # TRL's DPOTrainer would warn and ignore it
            self.layout = "padding_free" if self.layout == "padded" else self.layout
            self.padding_free = False
        if not self.sft_weight >= 0:
            raise ValueError(f"`sft_weight` must be >= 0 (it pulls positives up), got {self.sft_weight!r}.")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"`reduction` must be one of {list(REDUCTIONS)}, got {self.reduction!r}.")
        if self.bf16 is None and not self.fp16 and not self.use_cpu and not _has_accelerator():
            self.bf16 = False  # TRL's default bf16=True needs an accelerator (or use_cpu=True): float32 on a CPU
        super().__post_init__()


def pointwise_options(
    args: DPOConfig, config_class: type[PointwiseDPOConfig], score_type: str, owner: str
) -> SimpleNamespace:
    """A trainer's loss options: ``beta`` and the fields of ``config_class`` that `DPOConfig` lacks, from ``args``, or
    their defaults where ``args`` is a plain `DPOConfig` (a TRL script with the trainer class swapped);
    ``score_type`` (inferred from the data where unset) and ``length_normalize`` resolved. A pairwise-only option
    set, or a label threshold that makes every row one class, stops ``owner`` (the trainer's name) with one line."""
    for option, default in PAIRWISE_ONLY_OPTIONS.items():
        if getattr(args, option) != default:
            raise ValueError(
                f"`{option}={getattr(args, option)!r}` is a pairwise DPO option that {owner} does not use. Leave it "
                f"at its default ({default!r}); the point-wise loss is set by {config_class.__name__} (score_type, "
                "reduction, ...)."
            )
    dpo_fields = {option.name for option in fields(DPOConfig)}
    options = SimpleNamespace(beta=args.beta)
    for option in fields(config_class):
        if option.name not in dpo_fields:
            setattr(options, option.name, getattr(args, option.name, option.default))
    options.score_type = options.score_type or score_type
    if options.length_normalize is None:  # labels: the sum; continuous scores: the per-token mean (see above)
        options.length_normalize = options.score_type == "continuous"
    if options.score_type == "binary" and not 0 < options.positive_threshold <= 1:
        raise ValueError(
            f"`positive_threshold={options.positive_threshold}` with labels in [0, 1] makes every row a "
            f"{'negative' if options.positive_threshold > 1 else 'positive'}: use a value in (0, 1] (default 1.0)."
        )
    return options


def _has_accelerator() -> bool:
    import torch

    devices = [getattr(torch, name, None) for name in ("cuda", "xpu", "npu")] + [torch.backends.mps]
    return any(device is not None and device.is_available() for device in devices)
