"""The math of trl-ulma: point-wise DPO, ULMA and unlikelihood losses as pure functions of log-probs.

Notation (ULMA paper, arXiv 2312.02554):
    h = logp_policy - logp_ref            log-ratio of a completion under the policy and the frozen reference
    u = beta * h + log_z                  implicit reward; ``log_z`` stands for beta * log Z(x) (paper: Z(x) ~ 1, so 0)
    z                                     the example's label (0/1, soft in [0, 1]) or continuous score

Point-wise DPO fits ``u`` to ``z``:
    binary      -[z * log sigmoid(u) + (1 - z) * log sigmoid(-u)]    (logistic regression on the implicit reward)
    continuous  (z - u)^2                                             (least squares on the implicit reward)

ULMA keeps that term on negatives (z < positive_threshold) and replaces it on positives by plain SFT, i.e. the
negative log-likelihood with no KL regulariser. On a positive, d/dtheta of the point-wise DPO term is
beta * sigmoid(-u) times the SFT gradient; ULMA sets that weight to 1.

The balance of ULMA's two terms: per example, the SFT term pulls a positive up with weight 1 on grad log pi, while
the binary negative term pushes a negative down with weight beta * sigmoid(u), beta / 2 at the start (u = 0): twenty
times weaker at the paper's beta = 0.1. ``preference_weight`` multiplies the negative term; the weight
`balanced_preference_weight` (2 / beta) makes the two equal at the start, after which the push still decays as the
negative falls below the reference (sigmoid(u) -> 0): beta then sets how far negatives are pushed, and a fraction of
that weight (`ULMAConfig.preference_balance`) how hard.

Every function takes per-example sequence log-probs (see `sequence_logps`) and returns a `LossOutput` whose
``rewards`` are the per-example implicit rewards beta * h, for logging.
"""

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F


ScoreType = Literal["binary", "continuous"]
Reduction = Literal["per_group", "mean"]
SFTLossType = Literal["nll", "beta_nll", "token_nll", "pointwise_dpo"]
UnlikelihoodForm = Literal["sequence", "token"]

SCORE_TYPES = ("binary", "continuous")
REDUCTIONS = ("per_group", "mean")
SFT_LOSS_TYPES = ("nll", "beta_nll", "token_nll", "pointwise_dpo")
UNLIKELIHOOD_FORMS = ("sequence", "token")


class LossOutput(NamedTuple):
    """A loss, its two parts, the per-example implicit rewards and the per-example terms.

    ``sft_loss`` and ``preference_loss`` are the positive-group and negative-group contributions after reduction, so
    ``loss == sft_loss + preference_loss``. ``rewards`` is beta * (logp_policy - logp_ref), detached, or None when the
    loss has no reference model. ``terms`` (B,), detached, is each example's term before reduction: summing it per
    group over any set of batches and passing the sums to `reduce_groups` with that set's counts gives the loss of the
    whole set, whatever the batches were (how evaluation computes ``eval_loss``).
    """

    loss: torch.Tensor
    rewards: torch.Tensor | None
    sft_loss: torch.Tensor
    preference_loss: torch.Tensor
    terms: torch.Tensor | None = None


class GroupCounts(NamedTuple):
    """The sizes a loss is normalised by: positives, negatives, all examples, positive completion tokens.

    By default a loss uses its batch's own counts. To train N micro-batches (ranks x gradient-accumulation steps) like
    one big batch, pass the counts summed over all of them and divided by N: each micro-batch's loss then carries its
    share of the big batch's means, and the averaged gradient equals that of the big batch.
    """

    positive: float
    negative: float
    total: float
    positive_tokens: float = 0.0


def batch_counts(
    scores: torch.Tensor, positive_threshold: float = 1.0, token_mask: torch.Tensor | None = None
) -> GroupCounts:
    """The `GroupCounts` of one batch."""
    positive = scores >= positive_threshold
    tokens = 0.0 if token_mask is None else float(token_mask[positive].sum())
    return GroupCounts(float(positive.sum()), float((~positive).sum()), float(scores.numel()), tokens)


def sequence_logps(token_logps: torch.Tensor, mask: torch.Tensor, length_normalize: bool) -> torch.Tensor:
    """Sequence log-prob of each row: the sum of ``token_logps`` over ``mask``, or their mean if ``length_normalize``.

    The mean is what the ULMA reference code uses; the sum is what TRL's DPO uses. A row with no tokens gives 0.
    """
    mask = mask.bool()
    total = token_logps.masked_fill(~mask, 0.0).sum(-1)  # masked_fill, so -inf padding cannot leak in as NaN
    if not length_normalize:
        return total
    return total / mask.sum(-1).clamp(min=1)


def _check_option(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {list(allowed)}, got {value!r}.")


def pointwise_term(
    u: torch.Tensor, scores: torch.Tensor, score_type: ScoreType, score_scale: float = 1.0
) -> torch.Tensor:
    """Per-example point-wise DPO loss of implicit rewards ``u`` against labels or scores (targets
    ``score_scale * scores`` for continuous scores; see `pointwise_dpo_loss`)."""
    if score_type == "binary":
        return -(scores * F.logsigmoid(u) + (1 - scores) * F.logsigmoid(-u))
    if score_type == "continuous":
        return (score_scale * scores - u) ** 2
    raise ValueError(f"`score_type` must be one of {list(SCORE_TYPES)}, got {score_type!r}.")


def balanced_preference_weight(
    beta: float,
    score_type: ScoreType = "binary",
    sft_loss_type: SFTLossType = "nll",
    log_z: float = 0.0,
    reward_unit: float = 1.0,
) -> float:
    """The ``preference_weight`` that gives a typical negative's initial gradient (at the reference, h = 0) a
    positive's weight.

    A positive's gradient weight on grad log pi is 1 (``nll``, ``token_nll``), beta (``beta_nll``), or that of the
    point-wise DPO term (``pointwise_dpo``: already balanced, weight 1). The typical negative is, for labels, one
    labelled 0: its weight is beta * sigmoid(log_z) (beta / 2 at log_z = 0, the baseline label 0.5); for continuous
    scores, one whose target lies ``reward_unit`` below the reference's reward: 2 * beta * reward_unit (the
    trainers pass one standard deviation of the scores, in reward units).
    """
    _check_option("score_type", score_type, SCORE_TYPES)
    _check_option("sft_loss_type", sft_loss_type, SFT_LOSS_TYPES)
    if sft_loss_type == "pointwise_dpo":
        return 1.0
    positive = beta if sft_loss_type == "beta_nll" else 1.0
    negative = beta / (1 + math.exp(-log_z)) if score_type == "binary" else 2 * beta * reward_unit
    return positive / negative


def _safe_divide(value: torch.Tensor, count: float) -> torch.Tensor:
    return value / count if count > 0 else value  # an empty group's sum is 0, and stays 0


def reduce_groups(
    pos_sum: torch.Tensor,
    neg_sum: torch.Tensor,
    counts: GroupCounts,
    reduction: Reduction,
    token_level_positives: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn the summed terms of the positive and negative groups into (positive part, negative part).

    ``per_group``: mean over positives + mean over negatives (the ULMA reference code); an absent group adds exactly 0.
    ``mean``: sum over all examples / number of examples (the expectation over the dataset).
    ``token_level_positives`` (ULMA's ``token_nll``): ``pos_sum`` is a sum over positive tokens, whose token mean
    counts as every positive example's term.
    """
    _check_option("reduction", reduction, REDUCTIONS)
    if token_level_positives:
        pos_sum = _safe_divide(pos_sum, counts.positive_tokens) * counts.positive
    if reduction == "per_group":
        return _safe_divide(pos_sum, counts.positive), _safe_divide(neg_sum, counts.negative)
    return _safe_divide(pos_sum, counts.total), _safe_divide(neg_sum, counts.total)


def _by_group(pos_terms: torch.Tensor, neg_terms: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Per-example terms (B,), detached, from the terms of the positive and of the negative rows."""
    terms = torch.zeros(positive.shape, dtype=pos_terms.dtype, device=pos_terms.device)
    terms[positive] = pos_terms.detach()
    terms[~positive] = neg_terms.detach().to(terms.dtype)
    return terms


def pointwise_dpo_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    scores: torch.Tensor,
    beta: float = 0.1,
    score_type: ScoreType = "binary",
    log_z: float | torch.Tensor = 0.0,
    reduction: Reduction = "mean",
    positive_threshold: float = 1.0,
    counts: GroupCounts | None = None,
    score_scale: float = 1.0,
    sft_weight: float = 0.0,
) -> LossOutput:
    """Point-wise DPO: the implicit reward u = beta * h + log_z fitted to per-example labels or scores, plus
    ``sft_weight`` times the negative log-likelihood -logp on positives.

    Args:
        policy_logps, ref_logps: (B,) sequence log-probs of each completion under the policy and the reference.
        scores: (B,) labels in [0, 1] (``binary``, soft labels allowed) or real-valued scores (``continuous``).
        beta: KL strength; the implicit reward is beta * log(pi / pi_ref).
        score_type: ``binary`` (logistic loss) or ``continuous`` (squared loss).
        log_z: beta * log Z(x): a constant, or (B,) per example (a baseline; see `score_baselines`).
        reduction: ``mean`` over examples, or ``per_group`` (mean over positives + mean over negatives).
        positive_threshold: rows with score >= this form the positive group (used by ``per_group`` and the split
            into ``sft_loss`` / ``preference_loss``).
        counts: the group sizes to normalise by (see `GroupCounts`); default: this batch's.
        score_scale: continuous scores: the reward of a score z is ``score_scale * z`` (the fit is
            (score_scale * z - u)^2); 1 is the paper's.
        sft_weight: weight of an SFT term -logp added to each positive's term (0: the paper's loss). The point-wise
            term's pull on a positive fades as its reward grows (beta * sigmoid(-u)); this one does not, so the
            positives' tokens, which negatives share, stay likely however far the negatives are pushed.
    """
    _check_option("score_type", score_type, SCORE_TYPES)
    _check_option("reduction", reduction, REDUCTIONS)
    u = beta * (policy_logps - ref_logps) + log_z
    terms = pointwise_term(u, scores.to(u.dtype), score_type, score_scale)
    positive = scores >= positive_threshold
    if sft_weight:
        terms = terms + sft_weight * torch.where(positive, -policy_logps, torch.zeros_like(policy_logps))
    counts = counts or batch_counts(scores, positive_threshold)
    pos_loss, neg_loss = reduce_groups(terms[positive].sum(), terms[~positive].sum(), counts, reduction)
    rewards = (beta * (policy_logps - ref_logps)).detach()
    return LossOutput(pos_loss + neg_loss, rewards, pos_loss, neg_loss, terms.detach())


def ulma_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    scores: torch.Tensor,
    beta: float = 0.1,
    score_type: ScoreType = "binary",
    log_z: float | torch.Tensor = 0.0,
    reduction: Reduction = "per_group",
    positive_threshold: float = 1.0,
    sft_loss_type: SFTLossType = "nll",
    token_logps: torch.Tensor | None = None,
    token_mask: torch.Tensor | None = None,
    counts: GroupCounts | None = None,
    preference_weight: float = 1.0,
    score_scale: float = 1.0,
) -> LossOutput:
    """ULMA: an SFT term on positives (score >= ``positive_threshold``), the point-wise DPO term on negatives.

    Positive term, by ``sft_loss_type``:
        ``nll``           -logp                       (ULMA; weight 1 on the SFT gradient, no KL)
        ``beta_nll``      -beta * logp                (the upper bound of point-wise DPO's adaptive weight)
        ``token_nll``     token-level cross-entropy over all positive tokens of the batch (needs ``token_logps`` and
                          ``token_mask``, (B, T)); longer completions weigh more
        ``pointwise_dpo`` the point-wise DPO term, which makes this function equal `pointwise_dpo_loss` (with
                          ``preference_weight=1``)
    Negative term: the point-wise DPO term, -log sigmoid(-u) for a hard 0 label (the full logistic loss for soft
    labels) or (z - u)^2 for continuous scores, times ``preference_weight`` (1: the paper; see
    `balanced_preference_weight`).

    ``ref_logps`` may hold NaN on positive rows unless ``sft_loss_type="pointwise_dpo"``: the SFT terms never read it.
    Other arguments as in `pointwise_dpo_loss`.
    """
    _check_option("score_type", score_type, SCORE_TYPES)
    _check_option("reduction", reduction, REDUCTIONS)
    _check_option("sft_loss_type", sft_loss_type, SFT_LOSS_TYPES)
    positive = scores >= positive_threshold
    negative = ~positive
    counts = counts or batch_counts(scores, positive_threshold, token_mask)
    scores = scores.to(policy_logps.dtype)

    log_z = torch.as_tensor(log_z, dtype=policy_logps.dtype, device=policy_logps.device).expand_as(policy_logps)
    neg_u = beta * (policy_logps[negative] - ref_logps[negative]) + log_z[negative]
    neg_terms = preference_weight * pointwise_term(neg_u, scores[negative], score_type, score_scale)

    pos_logps = policy_logps[positive]
    if sft_loss_type == "nll":
        pos_terms = -pos_logps
    elif sft_loss_type == "beta_nll":
        pos_terms = -beta * pos_logps
    elif sft_loss_type == "pointwise_dpo":
        pos_u = beta * (pos_logps - ref_logps[positive]) + log_z[positive]
        pos_terms = pointwise_term(pos_u, scores[positive], score_type, score_scale)
    else:  # token_nll: a row's term is its summed token NLL; the reduction takes the token mean over the group
        if token_logps is None or token_mask is None:
            raise ValueError('`sft_loss_type="token_nll"` needs the per-token `token_logps` and `token_mask`.')
        pos_terms = -sequence_logps(token_logps[positive], token_mask[positive], False)

    token_level = sft_loss_type == "token_nll"
    pos_loss, neg_loss = reduce_groups(pos_terms.sum(), neg_terms.sum(), counts, reduction, token_level)
    rewards = (beta * (policy_logps - ref_logps)).detach()
    return LossOutput(pos_loss + neg_loss, rewards, pos_loss, neg_loss, _by_group(pos_terms, neg_terms, positive))


def unlikelihood_loss(
    policy_logps: torch.Tensor,
    scores: torch.Tensor,
    form: UnlikelihoodForm = "sequence",
    reduction: Reduction = "per_group",
    positive_threshold: float = 1.0,
    token_logps: torch.Tensor | None = None,
    token_mask: torch.Tensor | None = None,
    length_normalize: bool = True,
    min_prob_gap: float = 1e-5,
    counts: GroupCounts | None = None,
) -> LossOutput:
    """Unlikelihood training: raise the likelihood of positives, lower that of negatives. No reference model.

    ``form="sequence"`` is the ULMA reference code's baseline: -logp on positives, +logp on negatives (likelihood
    ascent; unbounded below). ``form="token"`` is the bounded token-level loss of Welleck et al. (2019): -log p_t on
    positive tokens and -log(1 - p_t) on negative tokens, with 1 - p_t clamped at ``min_prob_gap``; per-row sums or,
    with ``length_normalize``, per-row means over ``token_mask``. ``rewards`` is None. ``counts`` as in
    `pointwise_dpo_loss`.
    """
    _check_option("form", form, UNLIKELIHOOD_FORMS)
    _check_option("reduction", reduction, REDUCTIONS)
    positive = scores >= positive_threshold
    if form == "sequence":
        pos_terms, neg_terms = -policy_logps[positive], policy_logps[~positive]
    else:
        if token_logps is None or token_mask is None:
            raise ValueError('`form="token"` needs the per-token `token_logps` and `token_mask`.')
        # log(1 - p) = log(-expm1(log p)), accurate for p near 0 and near 1
        unlikely = torch.log((-torch.expm1(token_logps)).clamp(min=min_prob_gap))
        pos_terms = -sequence_logps(token_logps[positive], token_mask[positive], length_normalize)
        neg_terms = -sequence_logps(unlikely[~positive], token_mask[~positive], length_normalize)
    counts = counts or batch_counts(scores, positive_threshold)
    pos_loss, neg_loss = reduce_groups(pos_terms.sum(), neg_terms.sum(), counts, reduction)
    return LossOutput(pos_loss + neg_loss, None, pos_loss, neg_loss, _by_group(pos_terms, neg_terms, positive))
