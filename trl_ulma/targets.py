"""What the implicit reward is fitted to: the baseline beta * log Z(x) and the scale of continuous scores.

The derivation (docs/scores-baselines-scales.md): the KL-regularised optimum pi* = pi_ref * exp(r / beta) / Z(x) gives
r(x, y) = beta * h*(x, y) + beta * log Z(x), with beta * log Z(x) = beta * log E_{pi_ref}[exp(r / beta)], the soft value
of x under the reference. To first order in r / beta it is the reference's mean reward at x, which the data estimate
by the mean score (over the training set, or over a prompt's own rated completions). Point-wise DPO fits
u = beta * h + log_z to the label or score, so with log_z at the baseline, an answer scored at the baseline is left at
the reference, answers above it are raised and answers below it lowered:

    labels / soft labels   logistic fit; the baseline b (a mean label) enters as log_z = logit(b), the prior log-odds
    continuous scores      squared fit of score_scale * z; the baseline enters as log_z = score_scale * b

A score's units are arbitrary, and with the paper's scale (1) scores in [0, 1] ask for a per-token log-ratio of up to
1 / beta = 10 nats, which no policy reaches, so the pull never fades. ``score_scale="auto"`` is beta / std(scores):
one standard deviation of score asks for one nat of log-ratio (per token with ``length_normalize``).
"""

import math
from collections.abc import Hashable, Sequence

BASELINES = ("none", "mean", "prompt")
_EPS = 1e-3  # a mean label is kept inside [eps, 1 - eps], so its log-odds stay finite


def parse_option(name: str, value: str | float | None, names: tuple[str, ...]) -> str | float:
    """``value`` as one of ``names`` or a finite number (command lines pass numbers as text)."""
    if isinstance(value, str) and value in names:
        return value
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"`{name}` must be one of {list(names)} or a finite number, got {value!r}.")
    return number


def score_std(scores: Sequence[float]) -> float:
    """The population standard deviation of ``scores``."""
    mean = sum(scores) / len(scores)
    return math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))


def resolve_scale(score_scale: str | float, beta: float, scores: Sequence[float]) -> float:
    """The continuous scale: a number as given, or ``"auto"``: beta / std(scores)."""
    if score_scale != "auto":
        return float(score_scale)
    std = score_std(scores)
    if std == 0:
        raise ValueError(
            f"`score_scale='auto'` divides by the scores' standard deviation, and every training score is {scores[0]}: "
            "give a number (`score_scale=1.0` is the paper's)."
        )
    return beta / std


def baseline_offset(baseline: float, score_type: str, scale: float) -> float:
    """log_z for a baseline ``baseline`` in score units: logit(b) for labels, scale * b for continuous scores."""
    if score_type == "binary":
        b = min(max(baseline, _EPS), 1 - _EPS)
        return math.log(b / (1 - b))
    return scale * baseline


def prompt_baselines(scores: Sequence[float], prompts: Sequence[Hashable], mean: float) -> list[float]:
    """Each row's per-prompt baseline: the mean score of its prompt's rows, with the overall ``mean`` counted as one
    more row (so two labels 0 and 0 give (0 + 0 + m) / 3, not a certain 0); ``mean`` for a prompt rated once."""
    totals: dict[Hashable, list[float]] = {}
    for score, prompt in zip(scores, prompts, strict=True):
        total = totals.setdefault(prompt, [0.0, 0])
        total[0] += score
        total[1] += 1
    return [(totals[p][0] + mean) / (totals[p][1] + 1) if totals[p][1] > 1 else mean for p in prompts]


def loss_weighted_mean(scores: Sequence[float], positive_threshold: float, reduction: str) -> float:
    """The mean score as the loss weighs the rows, i.e. where an uninformed fit of a constant lands: over all rows
    (``reduction="mean"``), or halfway between the positives' and the negatives' means (``"per_group"``, each group
    weighing half; for labels 0.5 whatever the share of positives). One group alone: its mean."""
    positives = [s for s in scores if s >= positive_threshold]
    negatives = [s for s in scores if s < positive_threshold]
    if reduction == "per_group" and positives and negatives:
        return (sum(positives) / len(positives) + sum(negatives) / len(negatives)) / 2
    return sum(scores) / len(scores)
