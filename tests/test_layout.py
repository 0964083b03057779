"""Tests for `trl_ulma.layout`: padded, padding-free and shared-prompt layouts of point-wise rows.

The small cases spell out masks, positions and scored positions by hand. The model tests check that every layout
scores the same tokens as the padded collator, with the same per-row log-probs, entropies and gradients, on tiny
Qwen2 and Llama models in float32, with sdpa and eager attention.
"""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, Qwen2Config
from trl.trainer.utils import add_fused_lm_head

from trl_ulma.layout import build_layout, truncate_row
from trl_ulma.layout_support import supports_packed_layout
from trl_ulma.losses import sequence_logps
from trl_ulma.collator import DataCollatorForPointwisePreference
from trl_ulma.testing import assert_close_to_scale as assert_close, build_tiny_model, build_tokenizer, toy_rows


PACKED = ("padding_free", "shared_prompt")
MODES = ("padded", *PACKED)


def examples(rows) -> list[dict]:
    """Rows as the padded collator's examples."""
    return [{"prompt_ids": p, "completion_ids": c, "score": 1.0} for p, c in rows]


def causal(n: int) -> list[list[int]]:
    return [[int(k <= q) for k in range(n)] for q in range(n)]


def block_diagonal(*blocks: list[list[int]], total: int | None = None) -> list[list[int]]:
    """Blocks on the diagonal; padding up to ``total`` attends to itself only."""
    size = sum(len(b) for b in blocks)
    total = total or size
    out = [[0] * total for _ in range(total)]
    start = 0
    for block in blocks:
        for q, line in enumerate(block):
            out[start + q][start : start + len(line)] = line
        start += len(block)
    for pad in range(size, total):
        out[pad][pad] = 1
    return out


def shift_labels(layout) -> torch.Tensor:
    """(K, L) pre-shifted labels for TRL's fused head (``shift_labels=``): position t holds the id of the token it
    scores, -100 where nothing is scored (the library passes `Layout.labels`; both must give the same log-probs)."""
    return layout.input_ids.roll(-1, dims=1).masked_fill(layout.row_index < 0, -100)


def mask_of(layout, k: int = 0) -> list[list[int]]:
    return layout.attention_mask[k, 0].int().tolist()


# ------------------------------------------------------------------------------------------------------------------
# Hand-made layouts
# ------------------------------------------------------------------------------------------------------------------
def test_shared_prompt_three_completions():
    rows = [([1, 2, 3], [4, 5]), ([1, 2, 3], [6]), ([1, 2, 3], [7, 8, 9])]
    layout = build_layout(rows, "shared_prompt")
    #                              prompt   c0      copy c1   copy c2
    assert layout.input_ids.tolist() == [[1, 2, 3, 4, 5, 3, 6, 3, 7, 8, 9]]
    assert layout.position_ids.tolist() == [[0, 1, 2, 3, 4, 2, 3, 2, 3, 4, 5]]
    assert mask_of(layout) == [
        # 1  2  3  4  5  3' 6  3" 7  8  9
        [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # 1
        [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # 2
        [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0],  # 3
        [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],  # 4: the first completion sees the whole prompt
        [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0],  # 5
        [1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0],  # 3': the copy sees prompt[:-1] and itself
        [1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0],  # 6
        [1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0],  # 3"
        [1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0],  # 7
        [1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0],  # 8
        [1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1],  # 9
    ]
    # Position t scores token t + 1: 4 and 5 from 3 and 4, 6 from the copy, 7 8 9 from the copy, 7 and 8
    assert layout.row_index.tolist() == [[-1, -1, 0, 0, -1, 1, -1, 2, 2, 2, -1]]
    assert layout.token_slot.tolist() == [[-1, -1, 0, 1, -1, 0, -1, 0, 1, 2, -1]]
    assert layout.labels().tolist() == [[-100, -100, -100, 4, 5, -100, 6, -100, 7, 8, 9]]
    assert shift_labels(layout).tolist() == [[-100, -100, 4, 5, -100, 6, -100, 7, 8, 9, -100]]
    assert layout.row_counts.tolist() == [2, 1, 3]
    assert layout.row_lengths.tolist() == [5, 4, 6]
    assert layout.num_tokens == 11
    assert layout.sequence_mask.all()


def test_shared_prompt_one_completion_is_padding_free():
    rows = [([1, 2], [3, 4])]
    for mode in PACKED:
        layout = build_layout(rows, mode)
        assert layout.input_ids.tolist() == [[1, 2, 3, 4]]
        assert layout.position_ids.tolist() == [[0, 1, 2, 3]]
        assert mask_of(layout) == causal(4)
        assert layout.row_index.tolist() == [[-1, 0, 0, -1]]


def test_no_repeated_prompt_and_budget_packing():
    rows = [([1, 2], [3]), ([4], [5, 6]), ([7, 8, 9], [10])]  # lengths 3, 3, 4
    # Default budget: the longest unit (4), so no two rows fit together
    layout = build_layout(rows, "padding_free", pad_token_id=0)
    assert layout.input_ids.tolist() == [[7, 8, 9, 10], [1, 2, 3, 0], [4, 5, 6, 0]]  # first-fit decreasing
    assert layout.position_ids.tolist() == [[0, 1, 2, 3], [0, 1, 2, 0], [0, 1, 2, 0]]
    assert mask_of(layout, 1) == block_diagonal(causal(3), total=4)
    assert layout.row_index.tolist() == [[-1, -1, 2, -1], [-1, 0, -1, -1], [1, 1, -1, -1]]

    # Budget 8: the 4-token row and a 3-token row share a sequence; positions restart, attention stays in its row
    layout = build_layout(rows, "padding_free", budget=8, pad_token_id=0)
    assert layout.input_ids.tolist() == [[7, 8, 9, 10, 1, 2, 3], [4, 5, 6, 0, 0, 0, 0]]
    assert layout.position_ids.tolist() == [[0, 1, 2, 3, 0, 1, 2], [0, 1, 2, 0, 0, 0, 0]]
    assert mask_of(layout, 0) == block_diagonal(causal(4), causal(3))
    assert mask_of(layout, 1) == block_diagonal(causal(3), total=7)
    assert layout.row_index.tolist() == [[-1, -1, 2, -1, -1, 0, -1], [1, 1, -1, -1, -1, -1, -1]]
    assert layout.sequence_mask.sum(1).tolist() == [7, 3]

    # No prompt repeats: shared_prompt is padding_free
    shared = build_layout(rows, "shared_prompt", budget=8, pad_token_id=0)
    for name in ("input_ids", "position_ids", "attention_mask", "row_index"):
        assert torch.equal(getattr(shared, name), getattr(layout, name))

    # A unit over the budget gets its own sequence; L is rounded up to pad_to_multiple_of
    layout = build_layout(rows, "padding_free", budget=3, pad_to_multiple_of=8)
    assert layout.input_ids.shape == (3, 8)
    assert layout.sequence_mask.sum(1).tolist() == [4, 3, 3]


def test_packing_groups_and_rows():
    rows = [([1, 2, 3], [4]), ([9], [8, 7]), ([1, 2, 3], [5, 6])]
    layout = build_layout(rows, "shared_prompt", budget=20)
    # The group (1 2 3 4 | 3 5 6) and the lone row (9 8 7) share one sequence
    assert layout.input_ids.tolist() == [[1, 2, 3, 4, 3, 5, 6, 9, 8, 7]]
    assert layout.position_ids.tolist() == [[0, 1, 2, 3, 2, 3, 4, 0, 1, 2]]
    group = [
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0],
        [1, 1, 0, 0, 1, 0, 0],
        [1, 1, 0, 0, 1, 1, 0],
        [1, 1, 0, 0, 1, 1, 1],
    ]
    assert mask_of(layout) == block_diagonal(group, causal(3))
    assert layout.row_index.tolist() == [[-1, -1, 0, -1, 2, 2, -1, 1, 1, -1]]


def test_padded_layout_is_the_collator():
    rows = [([1, 2, 3], [4, 5]), ([6], [7]), ([8, 9], [10, 11, 12])]
    layout = build_layout(rows, "padded", pad_token_id=0)
    batch = DataCollatorForPointwisePreference(pad_token_id=0)(examples(rows))
    assert torch.equal(layout.input_ids, batch["input_ids"])
    assert torch.equal(layout.attention_mask, batch["attention_mask"])
    assert torch.equal(layout.labels(), batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100))
    assert torch.equal(layout.row_counts, batch["completion_mask"][:, 1:].sum(1))
    assert layout.position_ids.tolist() == [[0, 1, 2, 3, 4]] * 3
    assert layout.model_inputs("flash_attention_2")["attention_mask"].dim() == 2  # any attention takes it


@pytest.mark.parametrize("truncation_mode", ["keep_start", "keep_end"])
def test_truncation_scores_the_collators_tokens(truncation_mode):
    rows = [
        ([1, 2, 3], [4, 5, 6]),  # 6 tokens: cut
        ([1, 2, 3], [7]),  # fits
        ([1, 2, 3], [8, 9]),  # exactly max_length
        ([11, 12, 13, 14, 15, 16], [17]),  # the prompt alone is over max_length
        ([], [21, 22]),  # empty prompt: the first token is not scored
    ]
    max_length = 5
    batch = DataCollatorForPointwisePreference(pad_token_id=0, max_length=max_length, truncation_mode=truncation_mode)(
        examples(rows)
    )
    scored = batch["input_ids"][:, 1:].masked_fill(batch["completion_mask"][:, 1:] == 0, 0)
    expected = [row[row > 0].tolist() for row in scored]
    for mode in MODES:
        layout = build_layout(rows, mode, max_length=max_length, truncation_mode=truncation_mode)
        tokens = layout.row_tokens(layout.input_ids[:, 1:], fill=0)
        got = [row[mask].tolist() for row, mask in zip(tokens, layout.token_mask(), strict=True)]
        assert got == expected, mode
        assert layout.row_lengths.tolist() == batch["attention_mask"].sum(1).tolist()

    shared = build_layout(rows, "shared_prompt", max_length=max_length, truncation_mode=truncation_mode)
    if truncation_mode == "keep_start":
        # One prompt for rows 0-2 (row 0's completion cut to 2 tokens); rows 3 and 4 alone
        assert expected[:3] == [[4, 5], [7], [8, 9]]
        assert shared.input_ids.tolist()[0] == [1, 2, 3, 4, 5, 3, 7, 3, 8, 9]
        assert shared.position_ids.tolist()[0] == [0, 1, 2, 3, 4, 2, 3, 2, 3, 4]
    else:
        # Row 0 lost its prompt's first token: it is laid out alone, rows 1 and 2 share the prompt
        assert expected[:3] == [[4, 5, 6], [7], [8, 9]]
        assert [2, 3, 4, 5, 6] in [seq[:5] for seq in shared.input_ids.tolist()]
        assert [1, 2, 3, 7, 3, 8, 9] in [seq[:7] for seq in shared.input_ids.tolist()]
    assert shared.row_counts.tolist() == [len(e) for e in expected]


@pytest.mark.parametrize("mode", MODES)
def test_row_order_and_unpacking(mode):
    rows = [([1, 2], [30, 31]), ([5], [32]), ([1, 2], [33, 34, 35]), ([6, 7, 8, 9], [36]), ([1, 2], [37])]
    layout = build_layout(rows, mode, budget=9)
    scored_ids = layout.input_ids[:, 1:].float()  # per-token values aligned like log_probs: the scored token
    assert layout.row_sums(scored_ids).tolist() == [30 + 31, 32, 33 + 34 + 35, 36, 37]
    assert layout.row_sums(shift_labels(layout).clamp(min=0).float()).tolist() == [61, 32, 102, 36, 37]
    assert layout.row_counts.tolist() == [2, 1, 3, 1, 1]
    assert layout.row_tokens(scored_ids, fill=-1).tolist() == [
        [30, 31, -1], [32, -1, -1], [33, 34, 35], [36, -1, -1], [37, -1, -1]
    ]  # fmt: skip
    # Unscored positions never leak, even as -inf or NaN
    poisoned = scored_ids.masked_fill(layout.row_index[:, :-1] < 0, float("nan"))
    assert layout.row_sums(poisoned).tolist() == [61, 32, 102, 36, 37]
    # Booleans are counted
    assert layout.row_sums(scored_ids > 33).tolist() == [0, 0, 2, 1, 1]


@pytest.mark.parametrize("mode", MODES)
def test_unpacking_reads_nothing_back_from_the_device(mode):
    """On the meta device every shape that depends on the data (boolean indexing, bincount, nonzero) raises: what a
    GPU would have to send back to the host. The model inputs and the unpacking to rows need none."""
    rows = [([1, 2], [30, 31]), ([5], [32]), ([1, 2], [33, 34, 35]), ([6, 7, 8, 9], [36]), ([1, 2], [37])]
    layout = build_layout(rows, mode, budget=9).to("meta")
    num_seqs, length = layout.input_ids.shape
    values = torch.zeros(num_seqs, length - 1, device="meta")
    assert layout.row_sums(values).shape == (5,)
    assert layout.row_tokens(values).shape == layout.token_mask().shape == (5, 3)
    assert layout.labels().shape == (num_seqs, length)
    for attention in ("sdpa", "eager"):
        assert layout.model_inputs(attention)["input_ids"].device.type == "meta"


def test_bad_inputs():
    with pytest.raises(ValueError, match="mode"):
        build_layout([([1], [2])], "packed")
    with pytest.raises(ValueError, match="truncation_mode"):
        build_layout([([1], [2])], "padding_free", truncation_mode="keep_middle")
    layout = build_layout([([1], [2])], "shared_prompt")
    with pytest.raises(ValueError, match="attention"):
        layout.model_inputs("flash_attention_2")
    with pytest.raises(ValueError, match="Per-token"):
        layout.row_sums(torch.zeros(1, 5))


def test_truncate_row_matches_collator():
    assert truncate_row([1, 2, 3], [4, 5], 4, "keep_start") == ([1, 2, 3, 4], [0, 0, 0, 1])
    assert truncate_row([1, 2, 3], [4, 5], 4, "keep_end") == ([2, 3, 4, 5], [0, 0, 1, 1])
    assert truncate_row([1, 2, 3], [4, 5], None, "keep_end") == ([1, 2, 3, 4, 5], [0, 0, 0, 1, 1])


# ------------------------------------------------------------------------------------------------------------------
# Exactness against the padded path on real tiny models
# ------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def token_rows(tiny_tokenizer):
    """Toy rows with repeated prompts (pairs) and different lengths; one prompt has three completions."""
    rows = []
    for row in toy_rows(8, seed=1) + toy_rows(2, seed=3)[:1]:
        prompt = tiny_tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        completion = tiny_tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
        rows.append((prompt, completion + [tiny_tokenizer.eos_token_id]))
    rows.append((rows[0][0], rows[1][1][:3]))  # the first prompt again, a short completion
    rows.insert(3, rows.pop(-1))  # not next to its group
    return rows


def make_model(kind: str, attn: str, tokenizer):
    torch.manual_seed(0)
    if kind == "qwen2":
        model = build_tiny_model(tokenizer)
    else:
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = LlamaForCausalLM(config)
    model.set_attn_implementation(attn)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    return model.float().train()


def padded_reference(model, batch, weights):
    """The trainer's padded path: fused head with `labels`, per-row sums over ``completion_mask[:, 1:]``."""
    model.zero_grad()
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    outputs = model(**inputs, labels=labels, fused_lm_head=True)
    mask = batch["completion_mask"][:, 1:]
    logps = sequence_logps(outputs.log_probs[:, -mask.size(1) :], mask, length_normalize=False)
    entropy = (outputs.entropy * mask).sum(1)
    (weights * logps).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return logps.detach(), entropy.detach(), grads


def layout_fused(model, layout, attn, weights, shifted: bool):
    """The layout through TRL's fused head (``labels`` or ``shift_labels``), unpacked with `row_sums`."""
    model.zero_grad()
    label_kwargs = {"shift_labels": shift_labels(layout)} if shifted else {"labels": layout.labels()}
    outputs = model(**layout.model_inputs(attn), **label_kwargs, fused_lm_head=True)
    logps = layout.row_sums(outputs.log_probs)
    (weights * logps).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return logps.detach(), layout.row_sums(outputs.entropy).detach(), grads


def layout_logits(model, layout, attn):
    """The layout through plain logits: log_softmax, gather the next token, entropy of each prediction."""
    logits = model(**layout.model_inputs(attn)).logits[:, :-1]
    logp = logits.log_softmax(-1)
    token_logps = logp.gather(-1, layout.input_ids[:, 1:, None]).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return layout.row_sums(token_logps).detach(), layout.row_sums(entropy).detach()


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("truncation", [(None, "keep_start"), (30, "keep_start"), (30, "keep_end")])
def test_layouts_match_padded_path(kind, attn, truncation, tiny_tokenizer, token_rows):
    torch.set_num_threads(1)
    max_length, truncation_mode = truncation
    model = make_model(kind, attn, tiny_tokenizer)
    pad = tiny_tokenizer.pad_token_id
    collator = DataCollatorForPointwisePreference(pad, max_length=max_length, truncation_mode=truncation_mode)
    batch = collator(examples(token_rows))
    if max_length is not None:
        assert (batch["attention_mask"].sum(1) == max_length).sum() >= 3  # some rows are cut
    weights = torch.linspace(-1.0, 2.0, len(token_rows))
    ref_logps, ref_entropy, ref_grads = padded_reference(model, batch, weights)

    for mode in MODES:
        layout = build_layout(token_rows, mode, max_length, truncation_mode, pad_token_id=pad)
        if mode == "shared_prompt":
            assert layout.num_tokens < layout.row_lengths.sum()  # prompts are shared
        for shifted in (False, True):
            logps, entropy, grads = layout_fused(model, layout, attn, weights, shifted)
            assert_close(logps, ref_logps)
            assert_close(entropy, ref_entropy)
            for name, grad in grads.items():
                error = (grad - ref_grads[name]).norm() / ref_grads[name].norm().clamp(min=1e-12)
                assert error <= 1e-5, (mode, name, error.item())
        with torch.no_grad():
            logps, entropy = layout_logits(model, layout, attn)
        assert_close(logps, ref_logps)
        assert_close(entropy, ref_entropy)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_flex_attention_block_mask_matches_padded_path(kind, tiny_tokenizer, token_rows):
    """The packed layouts through FlexAttention with the layout's BlockMask give the padded sdpa path's per-row
    log-probs and entropies (the forward: torch runs FlexAttention's backward only on a GPU, where
    benchmarks/layout_exactness.py checks gradients too). Compiles FlexAttention for the CPU once per layout: a
    recompile for a second shape, which torch makes dynamic, fails in inductor's C++ codegen on the CPU (torch 2.13:
    ``cur_kvSplitSize9 was not declared``), so dynamo's caches are reset between the two."""
    torch.set_num_threads(1)
    model = make_model(kind, "sdpa", tiny_tokenizer).eval()
    pad = tiny_tokenizer.pad_token_id
    batch = DataCollatorForPointwisePreference(pad, max_length=30)(examples(token_rows))
    with torch.no_grad():
        labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
        outputs = model(batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels, fused_lm_head=True)
        mask = batch["completion_mask"][:, 1:]
        ref_logps = sequence_logps(outputs.log_probs[:, -mask.size(1) :], mask, length_normalize=False)
        ref_entropy = (outputs.entropy * mask).sum(1)
        model.set_attn_implementation("flex_attention")
        for mode in PACKED:
            torch._dynamo.reset()
            layout = build_layout(token_rows, mode, 30, pad_token_id=pad)
            inputs = layout.model_inputs("flex_attention")
            assert type(inputs["attention_mask"]).__name__ == "BlockMask"
            inputs["attention_mask"] = layout.block_mask(block_size=16)  # blocks the kernel skips (128 > L here)
            outputs = model(**inputs, labels=layout.labels(), fused_lm_head=True)
            assert_close(layout.row_sums(outputs.log_probs), ref_logps)
            assert_close(layout.row_sums(outputs.entropy), ref_entropy)


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_padding_free_as_one_varlen_sequence_matches_padded_path(kind, tiny_tokenizer, token_rows):
    """What FlashAttention gets (one sequence, no mask, positions restarting at each row: `Layout.varlen`), run on the
    CPU through sdpa, where transformers builds the block-causal mask from the positions as the varlen kernel takes
    its sequences from them: per-row log-probs, entropies and gradients equal the padded path's. FlashAttention itself
    needs a GPU (benchmarks/gpu.sh)."""
    torch.set_num_threads(1)
    model = make_model(kind, "sdpa", tiny_tokenizer)
    pad = tiny_tokenizer.pad_token_id
    batch = DataCollatorForPointwisePreference(pad, max_length=30)(examples(token_rows))
    weights = torch.linspace(-1.0, 2.0, len(token_rows))
    ref_logps, ref_entropy, ref_grads = padded_reference(model, batch, weights)
    packed = build_layout(token_rows, "padding_free", 30, budget=40, pad_token_id=pad)
    assert packed.input_ids.size(0) > 1 and not packed.sequence_mask.all()  # several sequences, some padding
    layout = packed.varlen()
    assert layout.input_ids.shape == (1, packed.num_tokens) and layout.sequence_mask.all()
    inputs = layout.model_inputs("flash_attention_2")
    assert "attention_mask" not in inputs  # no mask: the rows start where the positions restart, and at
    # the rows' bounds, as FlashAttention's varlen kernel reads them: one sequence per row, in the packed order
    lengths = [len(sequence) for sequence, _ in (truncate_row(p, c, 30, "keep_start") for p, c in token_rows)]
    bounds = inputs["cu_seq_lens_q"]
    assert bounds.dtype == torch.int32 and bounds[0] == 0 and bounds[-1] == sum(lengths)
    assert sorted(bounds.diff().tolist()) == sorted(lengths) and (bounds.diff() > 0).all()
    assert inputs["cu_seq_lens_k"] is bounds and inputs["max_length_q"] == inputs["max_length_k"] == max(lengths)
    model.zero_grad()
    outputs = model(**inputs, labels=layout.labels(), fused_lm_head=True)
    logps = layout.row_sums(outputs.log_probs)
    (weights * logps).sum().backward()
    assert_close(logps.detach(), ref_logps)
    assert_close(layout.row_sums(outputs.entropy).detach(), ref_entropy)
    for name, param in model.named_parameters():
        error = (param.grad - ref_grads[name]).norm() / ref_grads[name].norm().clamp(min=1e-12)
        assert error <= 1e-5, (name, error.item())
    with torch.no_grad():  # the layout's own mask agrees: the same rows through sdpa's dense mask
        dense = model(**layout.model_inputs("sdpa"), labels=layout.labels(), fused_lm_head=True)
    assert_close(layout.row_sums(dense.log_probs), ref_logps)
    with pytest.raises(ValueError, match="one sequence: use `Layout.varlen"):
        packed.model_inputs("flash_attention_2")
    with pytest.raises(ValueError, match="FlashAttention runs padding_free"):
        build_layout(token_rows, "shared_prompt").model_inputs("flash_attention_2")
    with pytest.raises(ValueError, match="Only the padding_free layout"):
        build_layout(token_rows, "shared_prompt").varlen()


def test_block_mask_is_the_dense_mask(token_rows):
    """The BlockMask keeps exactly the blocks of the dense packed mask with a visible token, and its mask function,
    evaluated at every (query, key), is the dense mask."""
    for mode in PACKED:
        layout = build_layout(token_rows, mode, 30, budget=40, pad_token_id=0)
        assert layout.input_ids.size(0) > 1  # several sequences, each with several units
        block_mask = layout.block_mask(block_size=8)
        blocks = block_mask.to_dense()  # (K, 1, blocks, blocks): True where a block has a visible token
        num_seqs, _, length, _ = layout.attention_mask.shape
        assert blocks.size(2) >= 4 and not blocks.all()  # several blocks, some of them skipped
        for k in range(num_seqs):
            visible = layout.attention_mask[k, 0]
            for i in range(blocks.size(2)):
                for j in range(blocks.size(3)):
                    any_visible = visible[i * 8 : (i + 1) * 8, j * 8 : (j + 1) * 8].any()
                    assert bool(blocks[k, 0, i, j]) == bool(any_visible)
        q, kv = torch.meshgrid(torch.arange(length), torch.arange(length), indexing="ij")
        for k in range(num_seqs):
            assert torch.equal(block_mask.mask_mod(torch.tensor(k), torch.tensor(0), q, kv), layout.attention_mask[k, 0])


# ------------------------------------------------------------------------------------------------------------------
# Which models take a packed layout
# ------------------------------------------------------------------------------------------------------------------
def test_supports_packed_layout(tiny_tokenizer):
    model = build_tiny_model(tiny_tokenizer)
    assert supports_packed_layout(model)[0]
    for attn in ("sdpa", "eager", "flex_attention"):
        assert supports_packed_layout(Qwen2Config(num_hidden_layers=2, attn_implementation=attn))[0]

    for attn in ("flash_attention_2", "paged|sdpa"):
        supported, reason = supports_packed_layout(Qwen2Config(num_hidden_layers=2, attn_implementation=attn))
        assert not supported and attn in reason
    # FlashAttention (built in or from the kernels hub) runs padding_free as one varlen sequence, not shared prompts
    for attn in ("flash_attention_2", "flash_attention_3", "kernels-community/flash-attn2"):
        config = Qwen2Config(num_hidden_layers=2)
        config._attn_implementation = attn
        assert supports_packed_layout(config, layout="padding_free")[0]
        supported, reason = supports_packed_layout(config, layout="shared_prompt")
        assert not supported and "FlashAttention runs layout='padding_free'" in reason
    assert not supports_packed_layout(Qwen2Config(num_hidden_layers=2, attn_implementation="paged|sdpa"),
                                      layout="padding_free")[0]

    # Sliding windows: refused unless every row fits in the window
    sliding = Qwen2Config(
        num_hidden_layers=4, use_sliding_window=True, sliding_window=64, max_window_layers=2, attn_implementation="sdpa"
    )
    supported, reason = supports_packed_layout(sliding)
    assert not supported and "sliding_window=64" in reason
    assert supports_packed_layout(sliding, max_length=64)[0]
    assert not supports_packed_layout(sliding, max_length=65)[0]
    assert not supports_packed_layout(MistralConfig(num_hidden_layers=2, attn_implementation="sdpa"))[0]
    assert supports_packed_layout(Qwen2Config(num_hidden_layers=2, sliding_window=64, attn_implementation="sdpa"))[0]

    # Linear-attention / recurrent layers
    hybrid = Qwen2Config(num_hidden_layers=2, attn_implementation="sdpa")
    hybrid.layer_types = ["linear_attention", "full_attention"]
    supported, reason = supports_packed_layout(hybrid)
    assert not supported and "linear_attention" in reason

    moe = Qwen2Config(num_hidden_layers=2, attn_implementation="sdpa")
    moe.output_router_logits = True
    supported, reason = supports_packed_layout(moe)
    assert not supported and "load-balancing" in reason
