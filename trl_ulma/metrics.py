"""The metrics, TRL's names (`rewards/chosen`, `logps/rejected`, ...) for point-wise rows: per-row sums and counts,
added up over ranks (and, in evaluation, over the whole set) before any division, so that every logged value covers
all rows and a rank with no positives neither hangs nor logs NaN.

A metric that is a ratio of two sums is one line of `RATIOS`; a new sum is one line of `row_stats`.
"""

from typing import Any

import torch

from .losses import GroupCounts, LossOutput, reduce_groups


# metric: (numerator, denominator), sums of `row_stats`; logged when the denominator is > 0
RATIOS = {
    "entropy": ("entropy", "tokens"),
    "mean_token_accuracy": ("top1_pos", "tokens_pos"),
    "logits/chosen": ("logits_pos", "tokens_pos"),
    "logits/rejected": ("logits_neg", "tokens_neg"),
    "logps/chosen": ("logp_pos", "n_pos"),
    "logps/rejected": ("logp_neg", "n_neg"),
    "rewards/chosen": ("reward_pos", "n_reward_pos"),
    "rewards/rejected": ("reward_neg", "n_reward_neg"),
    # Share of rows whose implicit reward beta * h has the sign of their group; 0 counts half
    "rewards/accuracies": ("correct", "n_finite"),
}


def float_dtype(device: torch.device) -> torch.dtype:
    """The dtype of sums and counts: float64, except on Apple's MPS, which has none."""
    return torch.float32 if device.type == "mps" else torch.float64


def row_stats(
    tokens: Any, policy_logps, ref_logps, scores, result: LossOutput, beta: float, positive_threshold: float
) -> dict[str, torch.Tensor]:
    """Each row's share of every sum the metrics are made of, (B,) per name. ``tokens``: the forward's
    `TokenOutputs` (mask, entropy, mean logits, top-1 hits per token)."""
    positive = scores >= positive_threshold
    rewards = (beta * (policy_logps - ref_logps)).detach()
    logps = policy_logps.detach()
    finite = torch.isfinite(rewards)
    mask = tokens.mask.bool()
    pos_tokens = mask & positive[:, None]
    neg_tokens = mask & ~positive[:, None]
    entropy, mean_logits, is_top1 = tokens.entropy.detach(), tokens.mean_logits.detach(), tokens.is_top1

    def where(condition: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        # Zero out unselected entries first: a NaN reward (no reference computed) must not leak into a sum
        return torch.where(condition, values, torch.zeros_like(values))

    # The implicit reward beta * h has the sign of the group; exactly 0 (every row before training) counts half
    correct = torch.where(rewards == 0, 0.5, ((rewards > 0) == positive).to(rewards.dtype))
    terms = result.terms.detach()
    stats = {
        "n_pos": positive,
        "n_neg": ~positive,
        "reward_pos": where(positive & finite, rewards),
        "n_reward_pos": positive & finite,
        "reward_neg": where(~positive & finite, rewards),
        "n_reward_neg": ~positive & finite,
        "logp_pos": where(positive, logps),
        "logp_neg": where(~positive, logps),
        "correct": where(finite, correct),
        "n_finite": finite,
        "term_pos": where(positive, terms),
        "term_neg": where(~positive, terms),
        "entropy": (entropy * mask).sum(1),
        "tokens": mask.sum(1),
        "top1_pos": (is_top1 & pos_tokens).sum(1),
        "tokens_pos": pos_tokens.sum(1),
        "logits_pos": where(pos_tokens, mean_logits).sum(1),
        "logits_neg": where(neg_tokens, mean_logits).sum(1),
        "tokens_neg": neg_tokens.sum(1),
        # Sufficient statistics of the Pearson correlation between implicit reward and score
        "x": where(finite, rewards),
        "y": where(finite, scores),
        "xy": where(finite, rewards * scores),
        "xx": where(finite, rewards * rewards),
        "yy": where(finite, scores * scores),
    }
    dtype = float_dtype(scores.device)
    return {name: values.to(dtype) for name, values in stats.items()}


def metrics_from_totals(
    t: dict[str, float],
    *,
    score_type: str,
    reduction: str,
    token_level_positives: bool,
    loss_parts: tuple[float, float] | None = None,
) -> dict[str, float]:
    """Metrics (and ``loss``) from the sums ``t`` of `row_stats`. ``loss_parts``: the (positive, negative) parts of
    the loss when the trainer already has them (training); otherwise they are reduced from the summed terms."""
    if loss_parts is None:
        counts = GroupCounts(t["n_pos"], t["n_neg"], t["n_pos"] + t["n_neg"], t["tokens_pos"])
        parts = reduce_groups(
            torch.tensor(t["term_pos"]), torch.tensor(t["term_neg"]), counts, reduction, token_level_positives
        )
        loss_parts = tuple(float(part) for part in parts)
    metrics = {
        "loss": loss_parts[0] + loss_parts[1],
        "loss/sft": loss_parts[0],
        "loss/preference": loss_parts[1],
        "count/positive": t["n_pos"],
        "count/negative": t["n_neg"],
    }
    for name, (numerator, denominator) in RATIOS.items():
        if t[denominator] > 0:
            metrics[name] = t[numerator] / t[denominator]
    if t["n_reward_pos"] > 0 and t["n_reward_neg"] > 0:
        metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
    n = t["n_finite"]
    if score_type == "continuous" and n > 1:
        cov = t["xy"] - t["x"] * t["y"] / n
        var_x, var_y = t["xx"] - t["x"] ** 2 / n, t["yy"] - t["y"] ** 2 / n
        if var_x > 0 and var_y > 0:
            metrics["rewards/score_correlation"] = cov / (var_x * var_y) ** 0.5
    return metrics
