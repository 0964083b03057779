"""Tests for the pure loss functions in `trl_ulma.losses`.

Every expected value is computed independently in this file with plain Python floats (`math.log`, `math.exp`), never
with the library's own helpers. Notation (ULMA paper, arXiv 2312.02554):

    h = logp_policy - logp_ref          log-ratio
    u = beta * h + log_z                implicit reward (log_z stands for beta * log Z(x))
    z                                   label in [0, 1] (binary, soft allowed) or real score (continuous)

    point-wise DPO, binary       -[z * log sigmoid(u) + (1 - z) * log sigmoid(-u)]
    point-wise DPO, continuous   (z - u)^2
    ULMA                         SFT term on positives (z >= threshold), point-wise DPO term on negatives

The gradient tests use autograd on synthetic sequence log-probs: d logp_policy / d theta is the SFT gradient
direction, so the gradient identities linking SFT and point-wise DPO are statements about d loss / d policy_logps.
"""

import math

import pytest
import torch

from trl_ulma.losses import (
    LossOutput,
    balanced_preference_weight,
    pointwise_dpo_loss,
    sequence_logps,
    ulma_loss,
    unlikelihood_loss,
)


# The running example. h = policy - ref = [0.5, 0.0, -1.0, 0.5].
POLICY = [-1.0, -2.0, -3.0, -0.5]
REF = [-1.5, -2.0, -2.0, -1.0]
HARD_LABELS = [1.0, 0.0, 1.0, 0.0]
SOFT_LABELS = [1.0, 0.3, 0.8, 0.0]  # only the first row reaches the default positive threshold of 1.0
CONTINUOUS_SCORES = [1.0, -0.5, 0.2, 2.0]  # rows 0 and 3 are >= 1.0, hence positives

# Per-token log-probs for the same four rows (B=4, T=3); row 1 has one padded token, row 3 two.
TOKEN_LOGPS = [
    [-0.5, -0.25, -0.25],
    [-1.0, -1.0, -7.0],
    [-2.0, -0.5, -0.5],
    [-0.5, -3.0, -3.0],
]
TOKEN_MASK = [
    [1, 1, 1],
    [1, 1, 0],
    [1, 1, 1],
    [1, 0, 0],
]

LOG_2 = math.log(2.0)  # 0.6931471805599453


# ----------------------------------------------------------------------------------------------------------------------
# Reference math on Python floats
# ----------------------------------------------------------------------------------------------------------------------


def t(values, requires_grad=False):
    """A float64 tensor, so comparisons against the float reference can be tight."""
    return torch.tensor(values, dtype=torch.float64, requires_grad=requires_grad)


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def implicit_reward(policy, ref, beta, log_z):
    return beta * (policy - ref) + log_z


def binary_term(u, z):
    return -(z * math.log(sigmoid(u)) + (1.0 - z) * math.log(sigmoid(-u)))


def continuous_term(u, z):
    return (z - u) ** 2


def pointwise_terms(policy, ref, scores, beta, score_type, log_z):
    term = binary_term if score_type == "binary" else continuous_term
    return [term(implicit_reward(p, r, beta, log_z), z) for p, r, z in zip(policy, ref, scores)]


def ulma_terms(policy, ref, scores, beta, score_type, log_z, sft_loss_type, threshold=1.0):
    """Per-example ULMA terms for the sequence-level SFT types (not token_nll, which is not per-example)."""
    terms = []
    for p, r, z in zip(policy, ref, scores):
        u = implicit_reward(p, r, beta, log_z)
        dpo = binary_term(u, z) if score_type == "binary" else continuous_term(u, z)
        if z < threshold:
            terms.append(dpo)
        elif sft_loss_type == "nll":
            terms.append(-p)
        elif sft_loss_type == "beta_nll":
            terms.append(-beta * p)
        elif sft_loss_type == "pointwise_dpo":
            terms.append(dpo)
        else:
            raise AssertionError(sft_loss_type)
    return terms


def reduce_parts(terms, is_positive, reduction):
    """(positive part, negative part) of the loss, by reduction."""
    pos = [x for x, keep in zip(terms, is_positive) if keep]
    neg = [x for x, keep in zip(terms, is_positive) if not keep]
    if reduction == "per_group":
        return (sum(pos) / len(pos) if pos else 0.0), (sum(neg) / len(neg) if neg else 0.0)
    return sum(pos) / len(terms), sum(neg) / len(terms)


def masked_sum(row, mask_row):
    return sum(x for x, m in zip(row, mask_row) if m)


def masked_mean(row, mask_row):
    n = sum(mask_row)
    return masked_sum(row, mask_row) / n if n else 0.0


def assert_close(actual, expected, tol=1e-10):
    actual = float(actual.detach()) if isinstance(actual, torch.Tensor) else float(actual)
    assert math.isfinite(actual), actual
    assert actual == pytest.approx(expected, rel=tol, abs=tol), (actual, expected)


def assert_output(out, expected_pos, expected_neg):
    assert isinstance(out, LossOutput)
    assert_close(out.sft_loss, expected_pos)
    assert_close(out.preference_loss, expected_neg)
    assert_close(out.loss, expected_pos + expected_neg)


# ----------------------------------------------------------------------------------------------------------------------
# sequence_logps
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.long, torch.float64])
def test_sequence_logps_sum_and_mean_with_padding(mask_dtype):
    token_logps = t([[-1.0, -2.0, -3.0], [-0.5, -1.5, 9.0], [5.0, 5.0, 5.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 0, 0]]).to(mask_dtype)
    # Row 0: sum -6, mean -2. Row 1: the padded 9.0 is ignored, sum -2, mean -1. Row 2: no tokens, 0 both ways.
    summed = sequence_logps(token_logps, mask, length_normalize=False)
    mean = sequence_logps(token_logps, mask, length_normalize=True)
    assert summed.tolist() == pytest.approx([-6.0, -2.0, 0.0])
    assert mean.tolist() == pytest.approx([-2.0, -1.0, 0.0])


def test_sequence_logps_matches_reference_on_running_example():
    token_logps, mask = t(TOKEN_LOGPS), torch.tensor(TOKEN_MASK)
    expected_sum = [masked_sum(r, m) for r, m in zip(TOKEN_LOGPS, TOKEN_MASK)]  # [-1, -2, -3, -0.5]
    expected_mean = [masked_mean(r, m) for r, m in zip(TOKEN_LOGPS, TOKEN_MASK)]
    assert expected_sum == POLICY
    assert sequence_logps(token_logps, mask, False).tolist() == pytest.approx(expected_sum)
    assert sequence_logps(token_logps, mask, True).tolist() == pytest.approx(expected_mean)


def test_sequence_logps_gradient_ignores_padding():
    token_logps = t([[-1.0, -2.0, -3.0], [-0.5, -1.5, 9.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    sequence_logps(token_logps, mask, length_normalize=True).sum().backward()
    assert torch.allclose(token_logps.grad, t([[1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]]))


# ----------------------------------------------------------------------------------------------------------------------
# pointwise_dpo_loss: values
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("z", [0.0, 0.5, 1.0])
def test_pointwise_dpo_binary_at_zero_reward_is_log_2(z):
    # h = 0 and log_z = 0 give u = 0 and sigmoid(0) = 1/2, so every label costs -log(1/2) = log 2 = 0.693147...
    out = pointwise_dpo_loss(t([-1.7]), t([-1.7]), t([z]), beta=0.5)
    assert_close(out.loss, 0.6931471805599453)


def test_pointwise_dpo_binary_hand_example():
    # beta = 0.5, h = [0.5, 0, -1, 0.5], so u = [0.25, 0, -0.5, 0.25]; labels [1, 0, 1, 0]:
    #   row 0: -log sigmoid(0.25)  = log(1 + e^-0.25) = 0.575939...
    #   row 1: -log sigmoid(0)     = log 2            = 0.693147...
    #   row 2: -log sigmoid(-0.5)  = log(1 + e^0.5)   = 0.974077...
    #   row 3: -log sigmoid(-0.25) = log(1 + e^0.25)  = 0.825939...
    # mean = 3.069103... / 4 = 0.767276...; positive part (0.575939 + 0.974077) / 4 = 0.387504...
    out = pointwise_dpo_loss(t(POLICY), t(REF), t(HARD_LABELS), beta=0.5, reduction="mean")
    assert_close(out.loss, 0.7672757511244348)
    assert_close(out.sft_loss, (0.5759394198788437 + 0.9740769841801068) / 4)
    assert_close(out.preference_loss, (0.6931471805599453 + 0.8259394198788435) / 4)


@pytest.mark.parametrize("reduction", ["mean", "per_group"])
@pytest.mark.parametrize("log_z", [0.0, 0.3, -0.8])
@pytest.mark.parametrize("beta", [0.1, 0.5])
@pytest.mark.parametrize(
    "score_type, scores",
    [("binary", HARD_LABELS), ("binary", SOFT_LABELS), ("continuous", CONTINUOUS_SCORES)],
    ids=["binary-hard", "binary-soft", "continuous"],
)
def test_pointwise_dpo_matches_reference(score_type, scores, beta, log_z, reduction):
    out = pointwise_dpo_loss(
        t(POLICY), t(REF), t(scores), beta=beta, score_type=score_type, log_z=log_z, reduction=reduction
    )
    terms = pointwise_terms(POLICY, REF, scores, beta, score_type, log_z)
    assert_output(out, *reduce_parts(terms, [z >= 1.0 for z in scores], reduction))


def test_pointwise_dpo_continuous_hand_example():
    # beta = 0.1, log_z = 0.2: u = 0.1 * [0.5, 0, -1, 0.5] + 0.2 = [0.25, 0.2, 0.1, 0.25]
    # scores [1, -0.5, 0.2, 2]: (z - u)^2 = [0.5625, 0.49, 0.01, 3.0625], mean = 4.125 / 4 = 1.03125
    out = pointwise_dpo_loss(
        t(POLICY), t(REF), t(CONTINUOUS_SCORES), beta=0.1, score_type="continuous", log_z=0.2, reduction="mean"
    )
    assert_close(out.loss, 1.03125)


def test_pointwise_dpo_positive_threshold_moves_rows_between_groups():
    # Soft labels [1, 0.3, 0.8, 0]; with threshold 0.5 rows 0 and 2 are positives. The total "mean" loss does not
    # depend on the split, but the per_group loss and the two parts do.
    terms = pointwise_terms(POLICY, REF, SOFT_LABELS, 0.5, "binary", 0.0)
    is_positive = [True, False, True, False]
    for reduction in ("mean", "per_group"):
        out = pointwise_dpo_loss(
            t(POLICY), t(REF), t(SOFT_LABELS), beta=0.5, reduction=reduction, positive_threshold=0.5
        )
        assert_output(out, *reduce_parts(terms, is_positive, reduction))


@pytest.mark.parametrize("log_z", [0.0, 0.7])
def test_rewards_are_detached_beta_h_without_log_z(log_z):
    policy = t(POLICY, requires_grad=True)
    for out in (
        pointwise_dpo_loss(policy, t(REF), t(HARD_LABELS), beta=0.5, log_z=log_z),
        ulma_loss(policy, t(REF), t(HARD_LABELS), beta=0.5, log_z=log_z),
    ):
        assert not out.rewards.requires_grad
        assert out.rewards.tolist() == pytest.approx([0.25, 0.0, -0.5, 0.25])


# ----------------------------------------------------------------------------------------------------------------------
# ulma_loss: values
# ----------------------------------------------------------------------------------------------------------------------


def test_ulma_hand_example():
    # beta = 0.5, per_group, nll. Positives (rows 0, 2): -logp = 1 and 3, mean 2.
    # Negatives (rows 1, 3): u = 0 and 0.25, -log sigmoid(-u) = log 2 = 0.693147... and log(1 + e^0.25) = 0.825939...,
    # mean 0.759543...; loss = 2.759543...
    out = ulma_loss(t(POLICY), t(REF), t(HARD_LABELS), beta=0.5)
    assert_close(out.sft_loss, 2.0)
    assert_close(out.preference_loss, 0.7595433002193943)
    assert_close(out.loss, 2.759543300219394)


@pytest.mark.parametrize("reduction", ["per_group", "mean"])
@pytest.mark.parametrize("log_z", [0.0, 0.3])
@pytest.mark.parametrize("beta", [0.1, 0.5])
@pytest.mark.parametrize("sft_loss_type", ["nll", "beta_nll", "pointwise_dpo"])
@pytest.mark.parametrize(
    "score_type, scores",
    [("binary", HARD_LABELS), ("binary", SOFT_LABELS), ("continuous", CONTINUOUS_SCORES)],
    ids=["binary-hard", "binary-soft", "continuous"],
)
def test_ulma_matches_reference(score_type, scores, sft_loss_type, beta, log_z, reduction):
    out = ulma_loss(
        t(POLICY),
        t(REF),
        t(scores),
        beta=beta,
        score_type=score_type,
        log_z=log_z,
        reduction=reduction,
        sft_loss_type=sft_loss_type,
    )
    terms = ulma_terms(POLICY, REF, scores, beta, score_type, log_z, sft_loss_type)
    assert_output(out, *reduce_parts(terms, [z >= 1.0 for z in scores], reduction))


def test_ulma_soft_negative_uses_full_logistic_loss():
    # Label 0.3 is below the threshold: the full -[z log s(u) + (1 - z) log s(-u)], not just -log s(-u).
    # beta = 0.5, h = 2, log_z = 0: u = 1.
    expected = -(0.3 * math.log(sigmoid(1.0)) + 0.7 * math.log(sigmoid(-1.0)))
    out = ulma_loss(t([-1.0]), t([-3.0]), t([0.3]), beta=0.5)
    assert_close(out.preference_loss, expected)
    assert_close(out.sft_loss, 0.0)
    assert float(out.loss) != pytest.approx(-math.log(sigmoid(-1.0)))


def test_ulma_positive_threshold():
    # Threshold 0.5: soft labels [1, 0.3, 0.8, 0] make rows 0 and 2 positives, so row 2 gets -logp = 3, not DPO.
    out = ulma_loss(t(POLICY), t(REF), t(SOFT_LABELS), beta=0.5, positive_threshold=0.5)
    terms = ulma_terms(POLICY, REF, SOFT_LABELS, 0.5, "binary", 0.0, "nll", threshold=0.5)
    assert terms[2] == 3.0
    assert_output(out, *reduce_parts(terms, [True, False, True, False], "per_group"))


@pytest.mark.parametrize("positive_threshold", [1.0, 0.5])
@pytest.mark.parametrize("reduction", ["per_group", "mean"])
@pytest.mark.parametrize("log_z", [0.0, -0.4])
@pytest.mark.parametrize(
    "score_type, scores",
    [("binary", HARD_LABELS), ("binary", SOFT_LABELS), ("continuous", CONTINUOUS_SCORES)],
    ids=["binary-hard", "binary-soft", "continuous"],
)
def test_ulma_pointwise_dpo_equals_pointwise_dpo_loss(score_type, scores, log_z, reduction, positive_threshold):
    # With threshold 0.5 the soft label 0.8 is a positive: its term must keep the soft label.
    kwargs = dict(
        beta=0.5, score_type=score_type, log_z=log_z, reduction=reduction, positive_threshold=positive_threshold
    )
    ulma = ulma_loss(t(POLICY), t(REF), t(scores), sft_loss_type="pointwise_dpo", **kwargs)
    pdpo = pointwise_dpo_loss(t(POLICY), t(REF), t(scores), **kwargs)
    for a, b in zip(ulma, pdpo):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["per_group", "mean"])
@pytest.mark.parametrize("score_type", ["binary", "continuous"])
def test_ulma_token_nll(score_type, reduction):
    # Positives are rows 0 and 2 (binary) or 0 and 3 (continuous, scores >= 1).
    scores = HARD_LABELS if score_type == "binary" else CONTINUOUS_SCORES
    positive_rows = [i for i, z in enumerate(scores) if z >= 1.0]
    pos_tokens = [x for i in positive_rows for x, m in zip(TOKEN_LOGPS[i], TOKEN_MASK[i]) if m]
    token_mean = -sum(pos_tokens) / len(pos_tokens)
    # binary: tokens of rows 0 and 2 are [-0.5, -0.25, -0.25, -2, -0.5, -0.5] -> 4 / 6 = 0.6667
    # continuous: tokens of rows 0 and 3 are [-0.5, -0.25, -0.25, -0.5] (padding of row 3 ignored) -> 1.5 / 4 = 0.375
    assert token_mean == pytest.approx(4 / 6 if score_type == "binary" else 0.375)

    out = ulma_loss(
        t(POLICY),
        t(REF),
        t(scores),
        beta=0.5,
        score_type=score_type,
        reduction=reduction,
        sft_loss_type="token_nll",
        token_logps=t(TOKEN_LOGPS),
        token_mask=torch.tensor(TOKEN_MASK),
    )
    neg_terms = [x for x, z in zip(pointwise_terms(POLICY, REF, scores, 0.5, score_type, 0.0), scores) if z < 1.0]
    n, n_pos = len(scores), len(positive_rows)
    if reduction == "per_group":
        expected_pos, expected_neg = token_mean, sum(neg_terms) / len(neg_terms)
    else:
        expected_pos, expected_neg = token_mean * n_pos / n, sum(neg_terms) / n
    assert_output(out, expected_pos, expected_neg)


def test_ulma_token_nll_weighs_long_completions_more():
    # Two positives: a 1-token completion with logp -3 and a 3-token one with logps -1 each (both sum to -3).
    # Token-level CE: (3 + 3) / 4 = 1.5, unlike the per-sequence mean of token means (3 + 1) / 2 = 2.
    token_logps = t([[-3.0, 0.0, 0.0], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]])
    out = ulma_loss(
        t([-3.0, -3.0]), t([-3.0, -3.0]), t([1.0, 1.0]), sft_loss_type="token_nll", token_logps=token_logps,
        token_mask=mask,
    )
    assert_close(out.loss, 1.5)


def test_ulma_token_nll_gradient_flows_to_tokens():
    token_logps = t(TOKEN_LOGPS, requires_grad=True)
    out = ulma_loss(
        t(POLICY), t(REF), t(HARD_LABELS), sft_loss_type="token_nll", token_logps=token_logps,
        token_mask=torch.tensor(TOKEN_MASK), reduction="per_group",
    )
    out.loss.backward()
    # d(-sum / 6)/d token = -1/6 on every real token of the positive rows 0 and 2, 0 elsewhere
    expected = [[-1 / 6] * 3, [0.0] * 3, [-1 / 6] * 3, [0.0] * 3]
    assert torch.allclose(token_logps.grad, t(expected))


# ----------------------------------------------------------------------------------------------------------------------
# unlikelihood_loss: values
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["per_group", "mean"])
def test_unlikelihood_sequence(reduction):
    # Positives rows 0, 2 (logp -1, -3); negatives rows 1, 3 (logp -2, -0.5).
    # per_group: -(-1 - 3)/2 + (-2 - 0.5)/2 = 2 - 1.25 = 0.75; mean: (4 - 2.5) / 4 = 0.375
    out = unlikelihood_loss(t(POLICY), t(HARD_LABELS), form="sequence", reduction=reduction)
    assert out.rewards is None
    if reduction == "per_group":
        assert_output(out, 2.0, -1.25)
        assert_close(out.loss, 0.75)
    else:
        assert_output(out, 1.0, -0.625)
        assert_close(out.loss, 0.375)


@pytest.mark.parametrize("reduction", ["per_group", "mean"])
@pytest.mark.parametrize("length_normalize", [True, False])
def test_unlikelihood_token(length_normalize, reduction):
    # Welleck et al.: -log p_t on positive tokens, -log(1 - p_t) on negative tokens, per-row mean or sum.
    reduce_row = masked_mean if length_normalize else masked_sum
    terms = []
    for row, mask_row, z in zip(TOKEN_LOGPS, TOKEN_MASK, HARD_LABELS):
        if z >= 1.0:
            terms.append(-reduce_row(row, mask_row))
        else:
            terms.append(-reduce_row([math.log(1.0 - math.exp(x)) for x in row], mask_row))
    out = unlikelihood_loss(
        t(POLICY),
        t(HARD_LABELS),
        form="token",
        reduction=reduction,
        token_logps=t(TOKEN_LOGPS),
        token_mask=torch.tensor(TOKEN_MASK),
        length_normalize=length_normalize,
    )
    assert out.rewards is None
    assert_output(out, *reduce_parts(terms, [z >= 1.0 for z in HARD_LABELS], reduction))


def test_unlikelihood_token_hand_example():
    # One negative row with tokens p = 1/2 and p = 1/4 (sum form): -log(1/2) - log(3/4) = 0.693147 + 0.287682 = 0.980829
    out = unlikelihood_loss(
        t([0.0]), t([0.0]), form="token", token_logps=t([[math.log(0.5), math.log(0.25)]]),
        token_mask=torch.tensor([[1, 1]]), length_normalize=False,
    )
    assert_close(out.loss, 0.6931471805599453 + 0.2876820724517809)


@pytest.mark.parametrize("min_prob_gap", [None, 1e-3])
def test_unlikelihood_token_saturated_negative_is_clamped(min_prob_gap):
    # p_t = 1 exactly (token logp 0.0) on a negative: log(1 - p_t) = -inf without the clamp. With the clamp at the
    # default 1e-5 the loss is -log(1e-5) = 11.512925...
    token_logps = t([[0.0, -1.0]], requires_grad=True)
    kwargs = {} if min_prob_gap is None else {"min_prob_gap": min_prob_gap}
    out = unlikelihood_loss(
        t([0.0]), t([0.0]), form="token", token_logps=token_logps, token_mask=torch.tensor([[1, 0]]), **kwargs
    )
    gap = 1e-5 if min_prob_gap is None else min_prob_gap
    assert_close(out.loss, -math.log(gap))
    if min_prob_gap is None:
        assert_close(out.loss, 11.512925464970229)
    out.loss.backward()
    assert torch.isfinite(token_logps.grad).all()


# ----------------------------------------------------------------------------------------------------------------------
# Gradient identities: point-wise DPO and ULMA as reweighted SFT
# ----------------------------------------------------------------------------------------------------------------------

GRAD_CASES = [(h, log_z, beta) for h in (-3.0, 0.0, 2.0) for log_z in (0.0, 0.7, -0.4) for beta in (0.1, 0.5)]


def grad_wrt_policy(loss_fn, h, **kwargs):
    """d loss / d logp_policy for one example with log-ratio h (ref logp fixed at -2)."""
    policy = t([-2.0 + h], requires_grad=True)
    out = loss_fn(policy, t([-2.0]), **kwargs)
    out.loss.backward()
    return float(policy.grad[0])


def sft_grad(h):
    """SFT: L = -logp, so dL/dlogp = -1 (ULMA's positive term with sft_loss_type='nll')."""
    return grad_wrt_policy(ulma_loss, h, scores=t([1.0]), reduction="mean", sft_loss_type="nll")


@pytest.mark.parametrize("h, log_z, beta", GRAD_CASES)
def test_grad_pointwise_dpo_positive_is_weighted_sft(h, log_z, beta):
    u = beta * h + log_z
    g = grad_wrt_policy(pointwise_dpo_loss, h, scores=t([1.0]), beta=beta, log_z=log_z, reduction="mean")
    assert_close(g, -beta * sigmoid(-u))
    # = w+(u) times the SFT gradient, with w+ = beta * sigmoid(-u) in (0, beta)
    assert_close(g, beta * sigmoid(-u) * sft_grad(h))
    assert 0.0 < g / sft_grad(h) < beta


def test_pointwise_dpo_sft_weight_hand_example():
    # test_pointwise_dpo_binary_hand_example plus 0.3 * -logp on the positives (rows 0 and 2: logp -1 and -3):
    # the positive part gains 0.3 * (1 + 3) / 4 = 0.3; the negatives' part is unchanged
    out = pointwise_dpo_loss(t(POLICY), t(REF), t(HARD_LABELS), beta=0.5, reduction="mean", sft_weight=0.3)
    assert_close(out.sft_loss, (0.5759394198788437 + 0.9740769841801068) / 4 + 0.3)
    assert_close(out.preference_loss, (0.6931471805599453 + 0.8259394198788435) / 4)
    expected_terms = [0.5759394198788437 + 0.3, 0.6931471805599453, 0.9740769841801068 + 0.9, 0.8259394198788435]
    assert torch.allclose(out.terms, t(expected_terms), rtol=1e-12, atol=0)
    # per_group: the positives' mean gains 0.3 * (1 + 3) / 2
    grouped = pointwise_dpo_loss(t(POLICY), t(REF), t(HARD_LABELS), beta=0.5, reduction="per_group", sft_weight=0.3)
    assert_close(grouped.sft_loss, (0.5759394198788437 + 0.9740769841801068) / 2 + 0.6)


@pytest.mark.parametrize("h, log_z, beta", GRAD_CASES)
def test_grad_pointwise_dpo_sft_weight_pulls_positives_without_fading(h, log_z, beta):
    # On a positive: beta * sigmoid(-u) (fades as u grows) plus sft_weight (does not); a negative's is unchanged
    u = beta * h + log_z
    g = grad_wrt_policy(pointwise_dpo_loss, h, scores=t([1.0]), beta=beta, log_z=log_z, sft_weight=0.2)
    assert_close(g, -beta * sigmoid(-u) - 0.2)
    g_negative = grad_wrt_policy(pointwise_dpo_loss, h, scores=t([0.0]), beta=beta, log_z=log_z, sft_weight=0.2)
    assert_close(g_negative, beta * sigmoid(u))


@pytest.mark.parametrize("h, log_z, beta", GRAD_CASES)
def test_grad_ulma_negative(h, log_z, beta):
    u = beta * h + log_z
    g = grad_wrt_policy(ulma_loss, h, scores=t([0.0]), beta=beta, log_z=log_z, reduction="mean")
    assert_close(g, beta * sigmoid(u))
    assert_close(g, -beta * sigmoid(u) * sft_grad(h))
    # the same as the negative half of point-wise DPO
    g_pdpo = grad_wrt_policy(pointwise_dpo_loss, h, scores=t([0.0]), beta=beta, log_z=log_z, reduction="mean")
    assert_close(g, g_pdpo)


@pytest.mark.parametrize("reduction", ["mean", "per_group"])
@pytest.mark.parametrize("h, log_z, beta", GRAD_CASES)
def test_grad_ulma_positive_is_sft(h, log_z, beta, reduction):
    g = grad_wrt_policy(ulma_loss, h, scores=t([1.0]), beta=beta, log_z=log_z, reduction=reduction)
    assert_close(g, -1.0)
    g_beta = grad_wrt_policy(
        ulma_loss, h, scores=t([1.0]), beta=beta, log_z=log_z, reduction=reduction, sft_loss_type="beta_nll"
    )
    assert_close(g_beta, -beta)


def test_ulma_preference_weight_hand_example():
    # test_ulma_hand_example with the negatives' term times 3: 2 + 3 * 0.759543... = 4.278629...
    out = ulma_loss(t(POLICY), t(REF), t(HARD_LABELS), beta=0.5, preference_weight=3.0)
    assert_close(out.sft_loss, 2.0)
    assert_close(out.preference_loss, 3 * 0.7595433002193943)
    assert_close(out.loss, 4.278629900658183)
    assert_close(ulma_loss(t(POLICY), t(REF), t(HARD_LABELS), preference_weight=0.0).loss, 2.0)


@pytest.mark.parametrize(
    "beta, score_type, sft_loss_type, expected",
    [
        (0.1, "binary", "nll", 20.0),  # 1 / (0.1 / 2)
        (0.5, "binary", "nll", 4.0),
        (0.5, "binary", "token_nll", 4.0),
        (0.5, "binary", "beta_nll", 2.0),  # 0.5 / (0.5 / 2)
        (0.5, "binary", "pointwise_dpo", 1.0),
        (0.1, "continuous", "nll", 5.0),  # 1 / (2 * 0.1)
        (0.5, "continuous", "beta_nll", 0.5),  # 0.5 / (2 * 0.5)
    ],
)
def test_balanced_preference_weight_values(beta, score_type, sft_loss_type, expected):
    assert balanced_preference_weight(beta, score_type, sft_loss_type) == pytest.approx(expected)


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_grad_balanced_negative_starts_at_the_positive_weight_and_decays(beta):
    """With the balanced weight, a negative at u = 0 is pushed down exactly as hard as a positive is pulled up (1);
    the push fades as the negative falls below the reference, and grows (up to 2) above it."""
    weight = balanced_preference_weight(beta)
    for h, expected in ((0.0, 1.0), (-3.0 / beta, 2 * sigmoid(-3.0)), (1.0 / beta, 2 * sigmoid(1.0))):
        g = grad_wrt_policy(ulma_loss, h, scores=t([0.0]), beta=beta, reduction="mean", preference_weight=weight)
        assert_close(g, expected)
    assert_close(sft_grad(0.0), -1.0)
    # continuous scores: the gradient per unit of reward error is the positive's, 1
    weight = balanced_preference_weight(beta, "continuous")
    g = grad_wrt_policy(
        ulma_loss, 0.0, scores=t([0.5]), beta=beta, score_type="continuous", reduction="mean", preference_weight=weight
    )
    assert_close(g, -0.5)


@pytest.mark.parametrize("z", [0.5, -1.0, 3.0])
@pytest.mark.parametrize("h, log_z, beta", GRAD_CASES)
def test_grad_pointwise_dpo_continuous(h, log_z, beta, z):
    u = beta * h + log_z
    g = grad_wrt_policy(
        pointwise_dpo_loss, h, scores=t([z]), beta=beta, log_z=log_z, score_type="continuous", reduction="mean"
    )
    assert_close(g, -2.0 * beta * (z - u))
    if z < 1.0:  # a ULMA negative gets the same continuous term
        g_ulma = grad_wrt_policy(
            ulma_loss, h, scores=t([z]), beta=beta, log_z=log_z, score_type="continuous", reduction="mean"
        )
        assert_close(g_ulma, -2.0 * beta * (z - u))


@pytest.mark.parametrize("z", [0.0, 0.3, 0.8, 1.0])
@pytest.mark.parametrize("h", [-3.0, 0.0, 2.0])
def test_grad_pointwise_dpo_binary_general_label(h, z):
    # For any label: dL/dlogp = -beta * (z - sigmoid(u))
    beta, log_z = 0.5, 0.3
    u = beta * h + log_z
    g = grad_wrt_policy(pointwise_dpo_loss, h, scores=t([z]), beta=beta, log_z=log_z, reduction="mean")
    assert_close(g, -beta * (z - sigmoid(u)))


@pytest.mark.parametrize("log_z", [0.0, 0.7])
def test_grad_per_example_in_batch(log_z):
    # In a batch, each example's gradient is its single-example identity divided by the reduction's denominator.
    beta = 0.5
    us = [implicit_reward(p, r, beta, log_z) for p, r in zip(POLICY, REF)]
    # ULMA, mean over N = 4: positives -1/4, negatives beta * sigmoid(u) / 4
    policy = t(POLICY, requires_grad=True)
    ulma_loss(policy, t(REF), t(HARD_LABELS), beta=beta, log_z=log_z, reduction="mean").loss.backward()
    expected = [(-1.0 if z == 1.0 else beta * sigmoid(u)) / 4 for u, z in zip(us, HARD_LABELS)]
    assert policy.grad.tolist() == pytest.approx(expected, rel=1e-10)
    # ULMA, per_group: each group has 2 examples
    policy = t(POLICY, requires_grad=True)
    ulma_loss(policy, t(REF), t(HARD_LABELS), beta=beta, log_z=log_z, reduction="per_group").loss.backward()
    expected = [(-1.0 if z == 1.0 else beta * sigmoid(u)) / 2 for u, z in zip(us, HARD_LABELS)]
    assert policy.grad.tolist() == pytest.approx(expected, rel=1e-10)
    # point-wise DPO, mean: -beta * (z - sigmoid(u)) / 4
    policy = t(POLICY, requires_grad=True)
    pointwise_dpo_loss(policy, t(REF), t(HARD_LABELS), beta=beta, log_z=log_z, reduction="mean").loss.backward()
    expected = [-beta * (z - sigmoid(u)) / 4 for u, z in zip(us, HARD_LABELS)]
    assert policy.grad.tolist() == pytest.approx(expected, rel=1e-10)


# ----------------------------------------------------------------------------------------------------------------------
# Batches with only one group
# ----------------------------------------------------------------------------------------------------------------------

ONE_GROUP_BATCHES = {
    # name: (scores for binary, scores for continuous, positives present?)
    "all_positive": ([1.0, 1.0, 1.0], [1.0, 2.0, 1.5], True),
    "all_negative": ([0.0, 0.3, 0.0], [0.2, -0.5, 0.9], False),
}

LOSS_CONFIGS = [
    ("pointwise_dpo", {}),
    ("ulma", {"sft_loss_type": "nll"}),
    ("ulma", {"sft_loss_type": "beta_nll"}),
    ("ulma", {"sft_loss_type": "token_nll"}),
    ("ulma", {"sft_loss_type": "pointwise_dpo"}),
]


def _run_one_group(kind, kwargs, scores):
    policy = t([-1.0, -2.0, -3.0], requires_grad=True)
    token_logps = t([[-0.5, -0.5], [-1.0, -1.0], [-1.5, -1.5]], requires_grad=True)
    mask = torch.tensor([[1, 1], [1, 0], [1, 1]])
    if kind == "pointwise_dpo":
        out = pointwise_dpo_loss(policy, t([-1.5, -2.0, -2.0]), t(scores), **kwargs)
    elif kind == "ulma":
        out = ulma_loss(
            policy, t([-1.5, -2.0, -2.0]), t(scores), token_logps=token_logps, token_mask=mask, **kwargs
        )
    else:
        out = unlikelihood_loss(policy, t(scores), token_logps=token_logps, token_mask=mask, **kwargs)
    return out, policy, token_logps


def _check_one_group(out, policy, token_logps, positives_present):
    for part in out[:1] + out[2:]:
        assert torch.isfinite(part).all()
    absent = out.preference_loss if positives_present else out.sft_loss
    present = out.sft_loss if positives_present else out.preference_loss
    assert absent.item() == 0.0
    assert_close(out.loss, present.item())
    out.loss.backward()
    grads = [p.grad for p in (policy, token_logps) if p.grad is not None]
    assert grads, "the loss depends on no input"
    for g in grads:
        assert torch.isfinite(g).all()


@pytest.mark.parametrize("reduction", ["per_group", "mean"])
@pytest.mark.parametrize("score_type", ["binary", "continuous"])
@pytest.mark.parametrize("kind, kwargs", LOSS_CONFIGS, ids=[f"{k}-{v}" for k, v in LOSS_CONFIGS])
@pytest.mark.parametrize("batch", list(ONE_GROUP_BATCHES))
def test_one_group_batches_are_finite(batch, kind, kwargs, score_type, reduction):
    binary_scores, continuous_scores, positives_present = ONE_GROUP_BATCHES[batch]
    scores = binary_scores if score_type == "binary" else continuous_scores
    out, policy, token_logps = _run_one_group(
        kind, dict(kwargs, score_type=score_type, reduction=reduction, beta=0.5, log_z=0.2), scores
    )
    _check_one_group(out, policy, token_logps, positives_present)


@pytest.mark.parametrize("reduction", ["per_group", "mean"])
@pytest.mark.parametrize("form", ["sequence", "token"])
@pytest.mark.parametrize("batch", list(ONE_GROUP_BATCHES))
def test_one_group_batches_are_finite_unlikelihood(batch, form, reduction):
    scores, _, positives_present = ONE_GROUP_BATCHES[batch]
    out, policy, token_logps = _run_one_group("unlikelihood", dict(form=form, reduction=reduction), scores)
    assert out.rewards is None
    _check_one_group(out, policy, token_logps, positives_present)


def test_one_group_batch_values():
    # All-positive ULMA nll batch, logps [-1, -2, -3]: the loss is plain SFT, mean 2, under both reductions.
    for reduction in ("per_group", "mean"):
        out = ulma_loss(t([-1.0, -2.0, -3.0]), t([0.0, 0.0, 0.0]), t([1.0, 1.0, 1.0]), reduction=reduction)
        assert_output(out, 2.0, 0.0)
    # All-negative point-wise DPO batch at u = 0: log 2 per example, under both reductions.
    for reduction in ("per_group", "mean"):
        out = pointwise_dpo_loss(t([-1.0, -2.0]), t([-1.0, -2.0]), t([0.0, 0.0]), reduction=reduction)
        assert_output(out, 0.0, LOG_2)


# ----------------------------------------------------------------------------------------------------------------------
# NaN reference log-probs on positive rows
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["per_group", "mean"])
@pytest.mark.parametrize("score_type", ["binary", "continuous"])
@pytest.mark.parametrize("sft_loss_type", ["nll", "beta_nll", "token_nll"])
def test_ulma_accepts_nan_ref_on_positives(sft_loss_type, score_type, reduction):
    # The reference model is never run on positives when the SFT term does not need it: NaN must not leak.
    scores = HARD_LABELS if score_type == "binary" else [1.0, 0.2, 1.0, -0.5]
    nan_ref = [math.nan if z >= 1.0 else r for r, z in zip(REF, scores)]
    kwargs = dict(
        beta=0.5, log_z=0.3, score_type=score_type, reduction=reduction, sft_loss_type=sft_loss_type,
        token_logps=t(TOKEN_LOGPS), token_mask=torch.tensor(TOKEN_MASK),
    )
    policy = t(POLICY, requires_grad=True)
    out = ulma_loss(policy, t(nan_ref), t(scores), **kwargs)
    for part in (out.loss, out.sft_loss, out.preference_loss):
        assert torch.isfinite(part)
    out.loss.backward()
    assert torch.isfinite(policy.grad).all()
    # ... and the value is the one computed with the finite reference
    clean = ulma_loss(t(POLICY), t(REF), t(scores), **kwargs)
    assert torch.allclose(out.loss, clean.loss, rtol=1e-12, atol=1e-12)
    # rewards of the negative rows are still defined
    negatives = [i for i, z in enumerate(scores) if z < 1.0]
    assert torch.isfinite(out.rewards[negatives]).all()


# ----------------------------------------------------------------------------------------------------------------------
# Bad options
# ----------------------------------------------------------------------------------------------------------------------

BAD_CALLS = {
    "pdpo-score_type": lambda: pointwise_dpo_loss(t(POLICY), t(REF), t(HARD_LABELS), score_type="foo"),
    "pdpo-reduction": lambda: pointwise_dpo_loss(t(POLICY), t(REF), t(HARD_LABELS), reduction="foo"),
    "ulma-score_type": lambda: ulma_loss(t(POLICY), t(REF), t(HARD_LABELS), score_type="foo"),
    "ulma-reduction": lambda: ulma_loss(t(POLICY), t(REF), t(HARD_LABELS), reduction="foo"),
    "ulma-sft_loss_type": lambda: ulma_loss(
        t(POLICY), t(REF), t(HARD_LABELS), sft_loss_type="foo", token_logps=t(TOKEN_LOGPS),
        token_mask=torch.tensor(TOKEN_MASK),
    ),
    "ulma-token_nll-no-token_logps": lambda: ulma_loss(
        t(POLICY), t(REF), t(HARD_LABELS), sft_loss_type="token_nll", token_mask=torch.tensor(TOKEN_MASK)
    ),
    "ulma-token_nll-no-token_mask": lambda: ulma_loss(
        t(POLICY), t(REF), t(HARD_LABELS), sft_loss_type="token_nll", token_logps=t(TOKEN_LOGPS)
    ),
    "ulma-token_nll-no-tokens-at-all": lambda: ulma_loss(t(POLICY), t(REF), t(HARD_LABELS), sft_loss_type="token_nll"),
    "ul-form": lambda: unlikelihood_loss(
        t(POLICY), t(HARD_LABELS), form="foo", token_logps=t(TOKEN_LOGPS), token_mask=torch.tensor(TOKEN_MASK)
    ),
    "ul-reduction": lambda: unlikelihood_loss(t(POLICY), t(HARD_LABELS), reduction="foo"),
    "ul-token-no-token_logps": lambda: unlikelihood_loss(t(POLICY), t(HARD_LABELS), form="token"),
}


@pytest.mark.parametrize("call", list(BAD_CALLS.values()), ids=list(BAD_CALLS))
def test_bad_options_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_negative_infinity_in_padding_does_not_leak():
    token_logps = torch.tensor([[-1.0, float("-inf")], [-2.0, -3.0]])
    mask = torch.tensor([[1, 0], [1, 1]])
    assert sequence_logps(token_logps, mask, False).tolist() == [-1.0, -5.0]
    scores = torch.tensor([1.0, 0.0])
    out = ulma_loss(torch.tensor([-1.0, -5.0]), torch.tensor([-1.0, -5.0]), scores, sft_loss_type="token_nll",
                    token_logps=token_logps, token_mask=mask)
    assert out.sft_loss.item() == 1.0
    assert math.isfinite(unlikelihood_loss(torch.zeros(2), scores, form="token", token_logps=token_logps,
                                           token_mask=mask).loss.item())


@pytest.mark.parametrize("reduction", ["per_group", "mean"])
@pytest.mark.parametrize("sft_loss_type", ["nll", "token_nll", "pointwise_dpo"])
def test_counts_across_ranks_reproduce_the_full_batch_loss(reduction, sft_loss_type):
    """Two 'ranks' normalising by the global counts / 2 average to the loss of one process on the whole batch."""
    from trl_ulma.losses import GroupCounts, batch_counts

    policy, ref = torch.tensor(POLICY), torch.tensor(REF)
    scores = torch.tensor([1.0, 1.0, 1.0, 0.0])  # rank 0 gets rows 0-1 (no negative), rank 1 rows 2-3
    tokens, mask = torch.tensor(TOKEN_LOGPS), torch.tensor(TOKEN_MASK)
    kwargs = dict(beta=0.5, reduction=reduction, sft_loss_type=sft_loss_type)
    full = ulma_loss(policy, ref, scores, token_logps=tokens, token_mask=mask, **kwargs).loss
    counts = GroupCounts(*(c / 2 for c in batch_counts(scores, 1.0, mask)))
    halves = [
        ulma_loss(policy[s], ref[s], scores[s], token_logps=tokens[s], token_mask=mask[s], counts=counts, **kwargs).loss
        for s in (slice(0, 2), slice(2, 4))
    ]
    assert ((halves[0] + halves[1]) / 2).item() == pytest.approx(full.item(), rel=1e-6)
    local = ulma_loss(policy[:2], ref[:2], scores[:2], token_logps=tokens[:2], token_mask=mask[:2], **kwargs).loss
    assert reduction == "mean" or local.item() != pytest.approx(halves[0].item())  # the counts do matter


# ---------------------------------------------------------------------------------------------------------------------
# Baselines and scales (trl_ulma.targets): gradient signs per score level at initialisation
# ---------------------------------------------------------------------------------------------------------------------
LEVELS = [0.0, 0.25, 0.5, 1.0, 1.0]  # a 1-5 rating with 4 and 5 positives: `ratings_to_scores(positive_at=4)`


def initial_grads(loss_fn, scores, **kwargs) -> list[float]:
    """d loss / d policy_logps per row at the reference (h = 0)."""
    policy = torch.zeros(len(scores), dtype=torch.float64, requires_grad=True)
    loss_fn(policy, torch.zeros_like(policy), t(scores), **kwargs).loss.backward()
    return policy.grad.tolist()


def target_options(score_type: str, baseline: str) -> dict:
    """The loss arguments a trainer passes for ``LEVELS`` (beta 0.1) under ``score_baseline=baseline``."""
    from trl_ulma.targets import baseline_offset, resolve_scale

    if baseline == "paper":
        return {"score_type": score_type}
    scale = resolve_scale("auto", 0.1, LEVELS) if score_type == "continuous" else 1.0
    mean = sum(LEVELS) / len(LEVELS)
    return {"score_type": score_type, "log_z": baseline_offset(mean, score_type, scale), "score_scale": scale}


@pytest.mark.parametrize("loss_fn", [pointwise_dpo_loss, ulma_loss])
@pytest.mark.parametrize("score_type", ["binary", "continuous"])
def test_grad_signs_per_score_level_with_the_mean_baseline(loss_fn, score_type):
    """Answers scored below the mean are pushed down (positive gradient: descent lowers h), and the push is
    monotone in the score; positives are pulled up."""
    grads = initial_grads(loss_fn, LEVELS, beta=0.1, **target_options(score_type, "mean"))
    assert grads[0] > grads[1] > grads[2] and grads[1] > 0  # 0 and 0.25 lie below the mean, 0.45
    assert grads[3] < 0 and grads[4] < 0


def test_grad_signs_of_the_papers_continuous_loss_push_nothing_down():
    """The paper's continuous loss (log_z = 0, scale 1) pulls every score above 0 up and leaves score 0 alone: the
    behaviour the baseline fixes."""
    grads = initial_grads(pointwise_dpo_loss, LEVELS, beta=0.1, **target_options("continuous", "paper"))
    assert grads[0] == 0 and all(g < 0 for g in grads[1:])


@pytest.mark.parametrize("score_type", ["binary", "continuous"])
@pytest.mark.parametrize("balance", [0.25, 1.0])
def test_preference_balance_is_the_same_share_for_every_score_type(score_type, balance):
    """The typical negative (label 0; for scores, one standard deviation below the baseline) starts with
    ``balance`` times a positive's pull (1), whatever the score type and baseline."""
    from trl_ulma.targets import score_std

    options = target_options(score_type, "mean")
    mean, std = sum(LEVELS) / len(LEVELS), score_std(LEVELS)
    unit = options["score_scale"] * std
    weight = balance * balanced_preference_weight(0.1, score_type, "nll", options["log_z"], unit)
    typical = 0.0 if score_type == "binary" else mean - std
    grads = initial_grads(ulma_loss, [typical, 1.0], beta=0.1, reduction="mean", preference_weight=weight, **options)
    assert grads[0] * 2 == pytest.approx(balance, rel=1e-9)  # reduction "mean" over 2 rows
    assert grads[1] * 2 == pytest.approx(-1.0, rel=1e-9)


def test_targets_hand_values():
    from trl_ulma.targets import baseline_offset, prompt_baselines, resolve_scale

    assert resolve_scale("auto", 0.1, [0.0, 1.0]) == pytest.approx(0.2)  # std 0.5
    assert resolve_scale(2.0, 0.1, [0.0, 1.0]) == 2.0
    with pytest.raises(ValueError, match="every training score is 0.5"):
        resolve_scale("auto", 0.1, [0.5, 0.5])
    assert baseline_offset(0.2, "binary", 1.0) == pytest.approx(math.log(0.25))
    assert baseline_offset(0.0, "binary", 1.0) == pytest.approx(math.log(1e-3 / (1 - 1e-3)))  # kept finite
    assert baseline_offset(0.2, "continuous", 3.0) == pytest.approx(0.6)
    assert prompt_baselines([1.0, 0.0, 5.0], ["a", "a", "b"], 2.0) == pytest.approx([1.0, 1.0, 2.0])


def test_loss_weighted_mean():
    from trl_ulma.targets import loss_weighted_mean

    scores = [0.0, 0.25, 0.5, 1.0]
    assert loss_weighted_mean(scores, 1.0, "mean") == pytest.approx(0.4375)
    assert loss_weighted_mean(scores, 1.0, "per_group") == pytest.approx((1.0 + 0.25) / 2)
    assert loss_weighted_mean([1.0, 0.0, 0.0, 0.0], 1.0, "per_group") == 0.5  # labels: 0.5 whatever the share
    assert loss_weighted_mean([0.0, 0.5], 1.0, "per_group") == 0.25  # one group: its mean
