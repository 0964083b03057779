"""The trainers on each layout (`PointwiseDPOConfig.layout`): the same log-probs, losses, metrics and gradients as
padded batches, the fallback for models that cannot take a packed layout, and the prompt-grouping sampler."""

import logging

import pytest
from datasets import Dataset
from peft import LoraConfig

from trl_ulma import PointwiseDPOConfig, PointwiseDPOTrainer, ULMAConfig, ULMATrainer
from trl_ulma.layout import PromptGroupSampler
from trl_ulma.testing import assert_close_to_scale, toy_rows, trainer_classes


TRAINERS = trainer_classes()


def rows(score_type: str) -> Dataset:
    """10 rows over 5 prompts: 3 completions for 2 prompts, 2 for one, 1 for two, of different lengths; the two
    single rows are short, so that `padding_free` packs them behind longer rows of the batch."""
    base = toy_rows(8)
    base[6] |= {"prompt": "Hi?", "completion": " Sure."}
    base[7] |= {"prompt": "Help?", "completion": " No."}
    data = []
    for prompt, completions in ((0, [0, 1, 3]), (2, [4, 5, 7]), (4, [2, 6]), (6, [6]), (7, [7])):
        for c in completions:
            label = c % 2 == 0
            score = {"label": label} if score_type == "binary" else {"score": 1.0 if label else 0.2 * (c % 3)}
            data.append({"prompt": base[prompt]["prompt"], "completion": base[c]["completion"] * (1 + c % 2)} | score)
    order = [0, 3, 6, 1, 9, 4, 7, 2, 8, 5]  # a batch's rows of one prompt are not adjacent
    return Dataset.from_list([data[i] for i in order])


def loss_and_grads(name, layout, score_type, model_dir, tokenizer, make_args, **options):
    trainer_class, config_class = TRAINERS[name]
    peft = options.pop("peft", False)
    args = make_args(config_class, layout=layout, beta=0.5, per_device_train_batch_size=10, **options)
    trainer = trainer_class(
        model=model_dir, args=args, train_dataset=rows(score_type), processing_class=tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM") if peft else None,
    )
    assert trainer._layout_mode == layout
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(10)]))
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    metrics = {key: values[-1] for key, values in trainer._metrics["train"].items()}
    return loss.detach(), grads, metrics


CASES = [
    ("pointwise_dpo", "binary", {}),
    ("pointwise_dpo", "continuous", {"length_normalize": False}),
    ("pointwise_dpo", "binary", {"precompute_ref_log_probs": True}),
    ("pointwise_dpo", "binary", {"peft": True}),
    ("ulma", "binary", {}),  # the reference forward runs on the negatives alone
    ("ulma", "continuous", {"sft_loss_type": "token_nll"}),
    ("ulma", "binary", {"peft": True, "precompute_ref_log_probs": True}),
    ("unlikelihood", "binary", {"unlikelihood_form": "token"}),
    ("ulma", "binary", {"max_length": 20}),  # completions cut: the prompt is still shared, kept once
    ("pointwise_dpo", "binary", {"max_length": 20, "truncation_mode": "keep_end"}),  # prompts cut differently
]


@pytest.mark.parametrize("layout", ["padding_free", "shared_prompt"])
@pytest.mark.parametrize("name, score_type, options", CASES)
def test_layout_matches_padded(name, score_type, options, layout, model_dir, tokenizer, make_args):
    expected = loss_and_grads(name, "padded", score_type, model_dir, tokenizer, make_args, **dict(options))
    found = loss_and_grads(name, layout, score_type, model_dir, tokenizer, make_args, **dict(options))
    assert_close_to_scale(found[0], expected[0])
    assert found[1].keys() == expected[1].keys() and found[1]
    for key in expected[1]:
        assert_close_to_scale(found[1][key], expected[1][key])
    assert found[2].keys() == expected[2].keys()
    # Rewards are differences of log-probs: their rounding scales with the largest log-prob, not with themselves
    scale = max(1.0, *(abs(value) for value in expected[2].values()))
    assert found[2] == pytest.approx(expected[2], rel=1e-5, abs=1e-6 * scale)


def test_unsupported_attention_falls_back_to_padding_with_one_warning(model_dir, tokenizer, make_args, caplog):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.config.sliding_window, model.config.use_sliding_window = 8, True  # shorter than max_length
    with caplog.at_level(logging.WARNING):
        trainer = ULMATrainer(model=model, args=make_args(ULMAConfig), train_dataset=rows("binary"),
                              processing_class=tokenizer)
        trainer.train()
    assert trainer._layout_mode == "padded"
    assert caplog.text.count("layout='shared_prompt' falls back to padded batches: sliding_window=8") == 1


def test_flash_attention_runs_shared_prompts_as_padding_free(model_dir, tokenizer, make_args, caplog):
    """FlashAttention takes no mask: a request for shared prompts falls back to padding_free, which the collator lays
    out as one varlen sequence (no mask, rows told apart by their positions)."""
    from transformers import AutoModelForCausalLM

    def flash(model):
        model.config._attn_implementation = "flash_attention_2"  # as loaded on a GPU (not run: no kernel on a CPU)
        return model

    for reference_attn in ("flash_attention_2", "sdpa"):
        model, reference = (AutoModelForCausalLM.from_pretrained(model_dir) for _ in range(2))
        reference = flash(reference) if reference_attn == "flash_attention_2" else reference
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            trainer = ULMATrainer(model=flash(model), ref_model=reference, args=make_args(ULMAConfig),
                                  train_dataset=rows("binary"), processing_class=tokenizer)
        assert trainer._layout_mode == "padding_free"
        assert caplog.text.count("layout='shared_prompt' falls back to padding_free: attention implementation "
                                 "'flash_attention_2' does not apply a custom mask") == 1
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(10)])
        for key in ("layout", "negatives_layout"):
            # One sequence without padding where both models run FlashAttention; else packed sequences, which the
            # forward turns into one for the FlashAttention model (an sdpa mask over one sequence would be N x N)
            one = reference_attn == "flash_attention_2"
            assert (batch[key].input_ids.size(0) == 1 and batch[key].sequence_mask.all()) == one
            assert (batch[key].cu_seq_lens is not None) == one


@pytest.mark.parametrize("name", ["ulma", "pointwise_dpo"])
def test_varlen_inputs_through_the_trainer_match_padded(name, model_dir, tokenizer, make_args, monkeypatch):
    """The trainer's FlashAttention path (collator's varlen layout, no mask, the forward as FlashAttention gets it)
    with sdpa standing in for the kernel: transformers builds the same sequences from the positions. Same loss,
    gradients and metrics as padded batches."""
    from trl_ulma import forward, layout, pointwise_dpo_trainer

    expected = loss_and_grads(name, "padded", "binary", model_dir, tokenizer, make_args)
    for module in (forward, layout, pointwise_dpo_trainer):
        monkeypatch.setattr(module, "is_varlen_attention", lambda implementation: implementation == "sdpa")
    found = loss_and_grads(name, "padding_free", "binary", model_dir, tokenizer, make_args)
    assert_close_to_scale(found[0], expected[0])
    assert found[1].keys() == expected[1].keys() and found[1]
    for key in expected[1]:
        assert_close_to_scale(found[1][key], expected[1][key])
    scale = max(1.0, *(abs(value) for value in expected[2].values()))
    assert found[2] == pytest.approx(expected[2], rel=1e-5, abs=1e-6 * scale)


def test_padding_free_flag_selects_the_layout(make_args):
    assert make_args(PointwiseDPOConfig, padding_free=True, layout="padded").layout == "padding_free"
    assert make_args(PointwiseDPOConfig, padding_free=True).layout == "shared_prompt"
    with pytest.raises(ValueError, match="`layout` must be one of"):
        make_args(PointwiseDPOConfig, layout="packed")


def test_prompt_group_sampler_keeps_prompts_together():
    prompts = ["a", "b", "a", "c", "b", "a"]
    sampler = PromptGroupSampler(prompts, seed=0)
    first, second = list(sampler), list(sampler)
    for order in (first, second):
        assert sorted(order) == list(range(6))
        runs = [prompts[i] for i in order]
        assert all(runs.index(p) + runs.count(p) - 1 == len(runs) - 1 - runs[::-1].index(p) for p in "abc")
    assert list(PromptGroupSampler(prompts, seed=0)) == first  # reproducible from the seed


def test_shared_prompt_training_batches_hold_whole_prompts(model_dir, tokenizer, make_args):
    trainer = PointwiseDPOTrainer(model=model_dir, args=make_args(PointwiseDPOConfig), train_dataset=rows("binary"),
                                  processing_class=tokenizer)
    assert isinstance(trainer._get_train_sampler(), PromptGroupSampler)
    padded = PointwiseDPOTrainer(model=model_dir, args=make_args(PointwiseDPOConfig, layout="padded"),
                                 train_dataset=rows("binary"), processing_class=tokenizer)
    assert not isinstance(padded._get_train_sampler(), PromptGroupSampler)
