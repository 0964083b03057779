"""PointwiseDPOTrainer and ULMATrainer end to end on a tiny offline model."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset, load_from_disk
from transformers import AutoModelForCausalLM
from trl import DPOConfig, DPOTrainer

from trl_ulma import PointwiseDPOConfig, PointwiseDPOTrainer, ULMAConfig, ULMATrainer, UnlikelihoodConfig, sequence_logps
from trl_ulma.testing import build_tiny_model, toy_dataset, toy_rows


TRAINERS = [(PointwiseDPOTrainer, PointwiseDPOConfig), (ULMATrainer, ULMAConfig)]


def snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def changed(model, before):
    return [name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])]


def logged(trainer, key):
    return [entry[key] for entry in trainer.state.log_history if key in entry]


def completion_logps(model, batch, length_normalize):
    """Independent reference: full logits, log-softmax, the next-token log-prob of every completion token."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    token_logps = torch.log_softmax(logits.float(), -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    mask = batch["completion_mask"][:, 1:].float()
    total = (token_logps * mask).sum(1)
    return total / mask.sum(1) if length_normalize else total


@pytest.mark.parametrize("trainer_class, config_class", TRAINERS)
def test_binary_labels_train_every_parameter(trainer_class, config_class, model_dir, tokenizer, make_args):
    trainer = trainer_class(
        model=model_dir, args=make_args(config_class), train_dataset=toy_dataset(16), processing_class=tokenizer
    )
    assert isinstance(trainer, DPOTrainer)
    assert trainer.options.score_type == "binary"
    before = snapshot(trainer.model)
    trainer.train()
    assert set(changed(trainer.model, before)) == set(before)
    last = trainer.state.log_history[-2]
    for key in ("loss", "rewards/rejected", "rewards/accuracies", "logps/chosen", "logps/rejected", "loss/sft",
                "loss/preference", "count/positive", "count/negative", "entropy"):
        assert math.isfinite(last[key]), key
    # ULMA's SFT term never reads the reference, so training skips its forward on positives: no positive rewards
    assert ("rewards/chosen" in last) == (trainer_class is PointwiseDPOTrainer)
    assert ("rewards/margins" in last) == (trainer_class is PointwiseDPOTrainer)
    assert last["count/positive"] + last["count/negative"] == 4
    assert last["loss"] == pytest.approx(last["loss/sft"] + last["loss/preference"], rel=1e-5)


@pytest.mark.parametrize("trainer_class, config_class", TRAINERS)
def test_continuous_scores(trainer_class, config_class, model_dir, tokenizer, make_args):
    rows = toy_rows(16)
    for i, row in enumerate(rows):
        row["score"] = 1.0 if row.pop("label") else -0.5 + 0.1 * (i % 4)
    trainer = trainer_class(
        model=model_dir, args=make_args(config_class, max_steps=2), train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    assert trainer.options.score_type == "continuous"
    before = snapshot(trainer.model)
    trainer.train()
    assert changed(trainer.model, before)
    correlations = logged(trainer, "rewards/score_correlation")
    assert correlations and all(-1.0 <= c <= 1.0 for c in correlations)
    assert "rewards/accuracies" in trainer.state.log_history[0]


@pytest.mark.parametrize("length_normalize", [True, False])
@pytest.mark.parametrize("trainer_class, config_class", TRAINERS)
def test_trainer_loss_matches_independent_computation(
    trainer_class, config_class, length_normalize, model_dir, tokenizer, make_args
):
    """The trainer's loss equals the paper's formula evaluated on log-probs from plain (unfused) forwards."""
    policy = AutoModelForCausalLM.from_pretrained(model_dir)
    reference = build_tiny_model(tokenizer, seed=1)  # differs from the policy, so h != 0
    args = make_args(config_class, length_normalize=length_normalize, beta=0.5, log_z=0.2)
    trainer = trainer_class(
        model=policy, ref_model=reference, args=args, train_dataset=toy_dataset(8), processing_class=tokenizer
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(6)])
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)

    h = completion_logps(policy, batch, length_normalize) - completion_logps(reference, batch, length_normalize)
    u = 0.5 * h + 0.2
    z = batch["score"]
    positive = z >= 1.0
    if trainer_class is ULMATrainer:  # per_group: -mean_pos logp + weight * mean_neg -log sigmoid(-u)
        # preference_balance=0.25 (the default) over a label-0 negative's initial push beta * sigmoid(log_z)
        weight = 0.25 / (0.5 * torch.sigmoid(torch.tensor(0.2)).item())
        sft = -completion_logps(policy, batch, length_normalize)[positive].mean()
        expected = sft - weight * F.logsigmoid(-u[~positive]).mean()
    else:  # mean over examples of the logistic loss
        expected = -(z * F.logsigmoid(u) + (1 - z) * F.logsigmoid(-u)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("preference_balance, weight", [(None, 1.0), (0.0, 0.0), (1.0, 8.0), (0.25, 2.0)])
def test_ulma_preference_balance_weights_the_negatives_term(
    preference_balance, weight, model_dir, tokenizer, make_args
):
    """beta = 0.25: the paper's plain sum (None, weight 1), SFT alone (0), a negative's initial gradient as strong
    as a positive's (1: weight 2 / beta = 8), the default (0.25: weight 2). Only the negatives' term is scaled."""
    args = make_args(ULMAConfig, beta=0.25, preference_balance=preference_balance)
    trainer = ULMATrainer(model=model_dir, args=args, train_dataset=toy_dataset(8), processing_class=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(6)])
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch).item()
    sft = trainer._metrics["train"]["loss/sft"][-1]
    preference = trainer._metrics["train"]["loss/preference"][-1]
    assert preference == pytest.approx(weight * math.log(2), rel=1e-5)  # at initialisation u = 0
    assert loss == pytest.approx(sft + preference, rel=1e-5)
    assert sft > 1.0


@pytest.mark.parametrize("preference_balance, equal", [(None, True), (1.0, True), (0.25, False)])
def test_ulma_with_pointwise_dpo_term_is_pointwise_dpo(preference_balance, equal, model_dir, tokenizer, make_args):
    """sft_loss_type="pointwise_dpo" is point-wise DPO (with the same reduction and length_normalize) when the
    negatives keep weight 1 (None; or balance 1, since the two terms are already balanced); the default balance 0.25
    weakens the push."""
    reference = build_tiny_model(tokenizer, seed=1)  # differs from the policy, so u != 0
    losses = []
    for trainer_class, extra in (
        (PointwiseDPOTrainer, {}),
        (ULMATrainer, {"sft_loss_type": "pointwise_dpo", "preference_balance": preference_balance}),
    ):
        args = make_args(trainer_class._config_class, beta=0.5, reduction="mean", length_normalize=True, **extra)
        policy = AutoModelForCausalLM.from_pretrained(model_dir)
        trainer = trainer_class(
            model=policy, ref_model=copy.deepcopy(reference), args=args, train_dataset=toy_dataset(8),
            processing_class=tokenizer,
        )
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(6)])
        trainer.model.train()
        losses.append(trainer.compute_loss(trainer.model, batch).item())
    assert (losses[0] == pytest.approx(losses[1], rel=1e-6)) is equal


def test_ulma_preference_balance_must_be_non_negative(make_args):
    with pytest.raises(ValueError, match="preference_balance"):
        make_args(ULMAConfig, preference_balance=-1.0)


@pytest.mark.parametrize("length_normalize", [True, False])
def test_sft_weight_adds_the_positives_nll_to_the_loss(length_normalize, model_dir, tokenizer, make_args):
    """`sft_weight` adds sft_weight * -log pi(y|x) of each positive, averaged over all rows (reduction "mean")."""
    losses = {}
    for weight in (0.0, 0.7):
        args = make_args(PointwiseDPOConfig, beta=0.5, sft_weight=weight, length_normalize=length_normalize)
        trainer = PointwiseDPOTrainer(
            model=model_dir, args=args, train_dataset=toy_dataset(8), processing_class=tokenizer
        )
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(6)])
        trainer.model.train()
        losses[weight] = trainer.compute_loss(trainer.model, batch).item()
    positive = batch["score"] >= 1.0
    assert 0 < int(positive.sum()) < 6
    nll = -completion_logps(trainer.model, batch, length_normalize)[positive].sum() / 6
    assert losses[0.7] - losses[0.0] == pytest.approx(0.7 * nll.item(), rel=1e-5)


@pytest.mark.parametrize(
    "config_class, trainer_class, column, option, expected",
    [
        (PointwiseDPOConfig, PointwiseDPOTrainer, "label", None, False),  # labels: the sum
        (PointwiseDPOConfig, PointwiseDPOTrainer, "score", None, True),  # continuous scores: the per-token mean
        (PointwiseDPOConfig, PointwiseDPOTrainer, "label", True, True),  # as given
        (PointwiseDPOConfig, PointwiseDPOTrainer, "score", False, False),
        (ULMAConfig, ULMATrainer, "label", "default", True),  # ULMA keeps the authors' per-token mean
        (ULMAConfig, ULMATrainer, "score", "default", True),
    ],
)
def test_length_normalize_default_follows_the_score_type(
    config_class, trainer_class, column, option, expected, model_dir, tokenizer, make_args
):
    rows = [{"prompt": r["prompt"], "completion": r["completion"], column: float(r["label"])} for r in toy_rows(8)]
    args = make_args(config_class) if option == "default" else make_args(config_class, length_normalize=option)
    dataset = Dataset.from_list(rows)
    trainer = trainer_class(model=model_dir, args=args, train_dataset=dataset, processing_class=tokenizer)
    assert trainer.options.length_normalize is expected
    # the loss reads the log-probs so normalised: the policy's own reward at the reference is 0, its log-prob is not
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    trainer.model.train()
    trainer.compute_loss(trainer.model, batch)
    logged = trainer._metrics["train"]["logps/chosen"][-1]
    positive = batch["score"] >= 1.0
    assert logged == pytest.approx(completion_logps(trainer.model, batch, expected)[positive].mean().item(), rel=1e-5)


def test_negative_sft_weight_is_refused(make_args):
    with pytest.raises(ValueError, match="sft_weight"):
        make_args(PointwiseDPOConfig, sft_weight=-0.1)


@pytest.mark.parametrize("config_class", [ULMAConfig, UnlikelihoodConfig])
def test_sft_weight_is_refused_where_positives_are_trained_by_sft_already(config_class, make_args):
    with pytest.raises(ValueError, match="sft_weight=0.5"):
        make_args(config_class, sft_weight=0.5)


def overfit(trainer_class, config_class, model_dir, tokenizer, make_args):
    """Train 30 steps on 8 rows; return the trainer, each row's log-prob shift from the reference, the positives."""
    args = make_args(config_class, max_steps=30, learning_rate=3e-3, beta=1.0, per_device_train_batch_size=8)
    trainer = trainer_class(model=model_dir, args=args, train_dataset=toy_dataset(8), processing_class=tokenizer)
    trainer.train()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
    reference = AutoModelForCausalLM.from_pretrained(model_dir)
    shift = completion_logps(trainer.model, batch, True) - completion_logps(reference, batch, True)
    return trainer, shift, batch["score"] >= 1.0


def test_ulma_moves_positives_up_and_negatives_down(model_dir, tokenizer, make_args):
    """A small overfit run: relative to the reference, positives' log-probs rise and negatives' fall behind."""
    trainer, shift, positive = overfit(ULMATrainer, ULMAConfig, model_dir, tokenizer, make_args)
    assert shift[positive].mean() > 0.5
    assert shift[~positive].mean() < shift[positive].mean() - 0.5
    metrics = trainer.evaluate(eval_dataset=toy_dataset(8))  # evaluation scores every row under the reference
    assert metrics["eval_rewards/margins"] > 0.5 and metrics["eval_rewards/accuracies"] == 1.0


def test_pointwise_dpo_separates_positives_from_negatives(model_dir, tokenizer, make_args):
    trainer, shift, positive = overfit(PointwiseDPOTrainer, PointwiseDPOConfig, model_dir, tokenizer, make_args)
    assert shift[positive].mean() > 0
    assert shift[~positive].mean() < 0
    assert logged(trainer, "rewards/accuracies")[-1] == 1.0


@pytest.mark.parametrize("implicit_prompt", [False, True])
def test_paired_dataset_is_unpaired(implicit_prompt, model_dir, tokenizer, make_args):
    pairs = {"prompt": ["The sky is", "The sun is", "Grass is", "Snow is"],
             "chosen": [" blue.", " hot.", " green.", " cold."], "rejected": [" green.", " cold.", " red.", " hot."]}
    if implicit_prompt:
        pairs = {"chosen": [p + c for p, c in zip(pairs["prompt"], pairs["chosen"])],
                 "rejected": [p + r for p, r in zip(pairs["prompt"], pairs["rejected"])]}
    trainer = ULMATrainer(
        model=model_dir, args=make_args(max_steps=1), train_dataset=Dataset.from_dict(pairs), processing_class=tokenizer
    )
    assert len(trainer.train_dataset) == 8
    assert sorted(trainer.train_dataset["score"]) == [0.0] * 4 + [1.0] * 4
    texts = {tokenizer.decode(row["prompt_ids"] + row["completion_ids"]) for row in trainer.train_dataset}
    assert "The sky is blue.<|endoftext|>" in texts and "The sky is green.<|endoftext|>" in texts
    assert tokenizer.decode(trainer.train_dataset[0]["prompt_ids"]).startswith("The sky is")
    trainer.train()


def test_conversational_rows_use_the_chat_template(model_dir, tokenizer, make_args):
    rows = [
        {"prompt": [{"role": "user", "content": row["prompt"]}],
         "completion": [{"role": "assistant", "content": row["completion"]}], "label": row["label"]}
        for row in toy_rows(8)
    ]
    trainer = ULMATrainer(
        model=model_dir, args=make_args(max_steps=1), train_dataset=Dataset.from_list(rows), processing_class=tokenizer
    )
    example = trainer.train_dataset[0]
    assert tokenizer.decode(example["prompt_ids"]).endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(example["completion_ids"]).endswith("<|im_end|>\n")
    trainer.train()


def test_peft_trains_adapters_and_uses_base_as_reference(model_dir, tokenizer, make_args):
    from peft import LoraConfig

    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = ULMATrainer(
        model=model_dir, args=make_args(), train_dataset=toy_dataset(16), processing_class=tokenizer,
        peft_config=peft_config,
    )
    assert trainer.ref_model is None
    before = snapshot(trainer.model)
    trainer.train()
    moved = changed(trainer.model, before)
    assert moved and all("lora_" in name for name in moved)
    assert trainer.state.log_history[0]["rewards/rejected"] == 0.0  # adapters start at zero: policy == reference


@pytest.mark.parametrize("trainer_class, config_class", TRAINERS)
def test_precomputed_reference_matches_on_the_fly(trainer_class, config_class, model_dir, tokenizer, make_args):
    def first_loss(**overrides):
        trainer = trainer_class(
            model=model_dir, args=make_args(config_class, max_steps=1, **overrides), train_dataset=toy_dataset(8),
            eval_dataset=toy_dataset(8, seed=1), processing_class=tokenizer,
        )
        trainer.train()
        return trainer, trainer.state.log_history[0]["loss"]

    precomputed, loss_pre = first_loss(precompute_ref_log_probs=True)
    assert precomputed.ref_model is None
    assert "ref_logps" in precomputed.train_dataset.column_names
    assert "ref_logps" in precomputed.eval_dataset.column_names
    _, loss_fly = first_loss()
    assert loss_pre == pytest.approx(loss_fly, rel=1e-5)
    assert math.isfinite(precomputed.evaluate()["eval_loss"])


def test_evaluate_on_init_split_and_raw_dataset(model_dir, tokenizer, make_args):
    trainer = ULMATrainer(
        model=model_dir, args=make_args(max_steps=1), train_dataset=toy_dataset(8), eval_dataset=toy_dataset(8, 1),
        processing_class=tokenizer,
    )
    trainer.train()
    metrics = trainer.evaluate()
    for key in ("eval_loss", "eval_rewards/chosen", "eval_rewards/rejected", "eval_loss/sft", "eval_count/positive"):
        assert math.isfinite(metrics[key]), key
    raw = trainer.evaluate(eval_dataset=toy_dataset(4, seed=2))
    assert math.isfinite(raw["eval_loss"])


def test_gradient_checkpointing_and_explicit_ref_model(model_dir, tokenizer, make_args):
    reference = AutoModelForCausalLM.from_pretrained(model_dir)
    trainer = ULMATrainer(
        model=model_dir, ref_model=reference, args=make_args(gradient_checkpointing=True),
        train_dataset=toy_dataset(8), processing_class=tokenizer,
    )
    before = snapshot(trainer.model)
    trainer.train()
    assert changed(trainer.model, before)
    assert all(torch.equal(p, q) for p, q in zip(reference.parameters(), AutoModelForCausalLM.from_pretrained(model_dir).parameters()))


def test_save_reload_and_model_card(model_dir, tokenizer, make_args, tmp_path):
    trainer = ULMATrainer(model=model_dir, args=make_args(), train_dataset=toy_dataset(8), processing_class=tokenizer)
    trainer.train()
    out = tmp_path / "saved"
    trainer.save_model(str(out))
    trainer.create_model_card(model_name="tiny-ulma")
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    for (name, p), q in zip(trainer.model.named_parameters(), reloaded.parameters()):
        assert torch.equal(p.detach(), q.detach()), name
    card = (tmp_path / "out" / "README.md").read_text()
    for text in ("trl-ulma", "ulma", "2312.02554", "ULMA"):
        assert text in card


@pytest.mark.parametrize("trainer_class", [DPOTrainer, PointwiseDPOTrainer, ULMATrainer])
def test_dpo_script_runs_with_the_class_swapped(trainer_class, model_dir, tokenizer, tmp_path):
    """A script written for DPOTrainer (DPOConfig, paired data) runs unchanged with our classes."""
    pairs = Dataset.from_dict({"prompt": ["Hi", "Yo"], "chosen": [" hello!", " hey!"], "rejected": [" go.", " no."]})
    args = DPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, max_steps=2, per_device_train_batch_size=2,
                     report_to="none", save_strategy="no", gradient_checkpointing=False, learning_rate=1e-3)
    trainer = trainer_class(model=model_dir, args=args, train_dataset=pairs, processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 2
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])


def test_tokenizer_without_pad_token_uses_eos(model_dir, tokenizer, make_args):
    tokenizer.pad_token = None
    trainer = ULMATrainer(model=model_dir, args=make_args(max_steps=1), train_dataset=toy_dataset(8), processing_class=tokenizer)
    assert tokenizer.pad_token == tokenizer.eos_token
    assert trainer.data_collator.pad_token_id == tokenizer.eos_token_id
    trainer.train()


def test_ulma_token_nll_and_model_instance_without_ref(model_dir, tokenizer, make_args):
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    trainer = ULMATrainer(
        model=copy.deepcopy(model), ref_model=model, args=make_args(sft_loss_type="token_nll", max_steps=2),
        train_dataset=toy_dataset(8), processing_class=tokenizer,
    )
    trainer.train()
    assert all(math.isfinite(v) for v in logged(trainer, "loss/sft"))


def count_reference_rows(trainer):
    """Wrap `compute_ref_log_probs` to record how many rows each reference forward scores."""
    seen = []
    original = trainer.compute_ref_log_probs

    def recording(model, inputs):
        seen.append(inputs["completion_mask"].size(0))  # a row per example, padded or laid out
        return original(model, inputs)

    trainer.compute_ref_log_probs = recording
    return seen


@pytest.mark.parametrize(
    "trainer_class, config_class, overrides, train_rows",
    [
        (ULMATrainer, ULMAConfig, {}, "negatives"),
        (ULMATrainer, ULMAConfig, {"sft_loss_type": "pointwise_dpo"}, "all"),
        (PointwiseDPOTrainer, PointwiseDPOConfig, {}, "all"),
    ],
)
def test_reference_forward_covers_only_the_rows_the_loss_reads(
    trainer_class, config_class, overrides, train_rows, model_dir, tokenizer, make_args
):
    trainer = trainer_class(
        model=model_dir, args=make_args(config_class, per_device_train_batch_size=8, **overrides),
        train_dataset=toy_dataset(8), processing_class=tokenizer,
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
    seen = count_reference_rows(trainer)
    trainer.model.train()
    trainer.compute_loss(trainer.model, batch)
    negatives = int((batch["score"] < 1.0).sum())
    assert seen == [negatives if train_rows == "negatives" else 8]
    trainer.model.eval()
    with torch.no_grad():
        trainer.compute_loss(trainer.model, batch)
    assert seen[-1] == 8  # evaluation scores every row


def test_ulma_precompute_stores_reference_only_for_negatives(model_dir, tokenizer, make_args):
    trainer = ULMATrainer(
        model=model_dir, args=make_args(precompute_ref_log_probs=True, max_steps=1), train_dataset=toy_dataset(8),
        eval_dataset=toy_dataset(8, seed=1), processing_class=tokenizer,
    )
    train = trainer.train_dataset
    for score, ref in zip(train["score"], train["ref_logps"]):
        assert math.isnan(ref) == (score >= 1.0)
    assert all(math.isfinite(ref) for ref in trainer.eval_dataset["ref_logps"])
    trainer.train()
    assert math.isfinite(trainer.evaluate()["eval_rewards/chosen"])


def test_forward_never_materialises_full_vocabulary_logits(model_dir, tokenizer, make_args):
    """TRL's fused LM head scores tokens in tiles: no (batch, seq, vocab)-sized tensor appears in the loss forward."""
    from torch.utils._python_dispatch import TorchDispatchMode

    long_rows = [{"prompt": "User: hello\nAssistant:", "completion": " hi" * 700, "label": i % 2 == 0} for i in range(8)]
    trainer = ULMATrainer(
        model=model_dir, args=make_args(max_length=None), train_dataset=Dataset.from_list(long_rows),
        processing_class=tokenizer,
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
    vocab = trainer.model.config.vocab_size
    full_logits = batch["input_ids"].size(0) * (batch["input_ids"].size(1) - 1) * vocab
    assert full_logits > 4096 * vocab  # more tokens than one tile, so a full tensor would stand out

    class LargestVocabTensor(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for tensor in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(tensor, torch.Tensor) and tensor.dim() >= 2 and tensor.size(-1) == vocab:
                    self.largest = max(self.largest, tensor.numel())
            return out

    trainer.model.train()
    with LargestVocabTensor() as mode:
        loss = trainer.compute_loss(trainer.model, batch)
    assert torch.isfinite(loss)
    assert 0 < mode.largest < full_logits


@pytest.mark.parametrize("layout", ["shared_prompt", "padding_free"])
def test_the_collator_lays_out_the_batch_and_the_forward_reads_nothing_back(layout, model_dir, tokenizer, make_args):
    """The trainer's collator lays out each batch (and ULMA's negatives apart, for their reference forward) on the
    CPU: the forward and the reference forward then take no value from a tensor (no `.item()`, `.tolist()` or
    `nonzero`, each a device-to-host sync on a GPU), where laying out the padded batch in the forward takes several;
    both give the same log-probs."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class HostReads(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.reads = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten._local_scalar_dense, torch.ops.aten.nonzero):
                self.reads.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    trainer = ULMATrainer(
        model=model_dir, args=make_args(layout=layout), train_dataset=toy_dataset(8), processing_class=tokenizer
    )
    assert trainer.data_collator.layout == layout and trainer.data_collator.negatives_below == 1.0
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
    padded = {key: value for key, value in batch.items() if key not in ("layout", "negatives", "negatives_layout")}
    found = {}
    for name, inputs in (("collator", batch), ("forward", padded)):
        with torch.no_grad(), HostReads() as reads:
            logps = sequence_logps(*trainer._forward_tokens(trainer.model, inputs)[:2], length_normalize=False)
            ref = trainer._reference_logps(trainer.model, inputs, "train")
        found[name] = (logps, ref, reads.reads)
    assert found["collator"][2] == [] and "nonzero" in found["forward"][2]
    torch.testing.assert_close(found["collator"][0], found["forward"][0], rtol=0, atol=0)
    torch.testing.assert_close(found["collator"][1], found["forward"][1], rtol=0, atol=0, equal_nan=True)
    assert int(torch.isnan(found["collator"][1]).sum()) == int((batch["score"] >= 1.0).sum())  # positives: none


def grouped_eval_rows(n_pos: int = 7, n_neg: int = 5) -> list[dict]:
    """Held-out rows as DPO pairs give them: all positives, then all negatives."""
    rows = toy_rows(4 * (n_pos + n_neg), seed=3)
    return [r for r in rows if r["label"]][:n_pos] + [r for r in rows if not r["label"]][:n_neg]


@pytest.mark.parametrize("trainer_class, config_class", TRAINERS)
def test_eval_loss_and_metrics_are_those_of_the_whole_set(trainer_class, config_class, model_dir, tokenizer, make_args):
    """Grouped rows in batches of 2, the same rows interleaved in batches of 5 (uneven) and one full batch give the
    same `eval_loss` and metrics, equal to the loss formula on the whole set's log-probs."""
    policy = AutoModelForCausalLM.from_pretrained(model_dir)
    reference = build_tiny_model(tokenizer, seed=1)  # differs from the policy, so the rewards are not all 0
    rows = grouped_eval_rows()
    interleaved = [rows[i] for i in (0, 7, 1, 8, 2, 9, 3, 10, 4, 11, 5, 6)]
    results = []
    for eval_rows, batch_size in [(rows, 2), (interleaved, 5), (rows, len(rows))]:
        args = make_args(config_class, beta=0.5, per_device_eval_batch_size=batch_size)
        trainer = trainer_class(model=policy, ref_model=reference, args=args, train_dataset=toy_dataset(8),
                                processing_class=tokenizer)
        results.append(trainer.evaluate(Dataset.from_list(eval_rows)))
    keys = [key for key in results[-1] if key.startswith("eval_") and "runtime" not in key and "per_second" not in key]
    assert {"eval_loss", "eval_rewards/accuracies", "eval_loss/sft", "eval_logps/chosen"} <= set(keys)
    for result in results[:-1]:
        assert {k: result[k] for k in keys} == pytest.approx({k: results[-1][k] for k in keys}, rel=1e-5, abs=1e-6)

    prepared = trainer._prepare_dataset(Dataset.from_list(rows), tokenizer, args, "eval")
    batch = trainer.data_collator([prepared[i] for i in range(len(rows))])
    mean = trainer_class is ULMATrainer  # point-wise DPO on labels sums the log-probs, ULMA takes per-token means
    logps = completion_logps(policy, batch, mean)
    u = 0.5 * (logps - completion_logps(reference, batch, mean))
    positive = batch["score"] >= 1.0
    if trainer_class is ULMATrainer:
        expected = -logps[positive].mean() - 0.25 * 2 / 0.5 * F.logsigmoid(-u[~positive]).mean()
    else:
        expected = -(positive * F.logsigmoid(u) + ~positive * F.logsigmoid(-u)).mean()
    assert results[0]["eval_loss"] == pytest.approx(expected.item(), rel=1e-5)
    accuracy = ((u > 0) == positive).float().mean().item()
    assert results[0]["eval_rewards/accuracies"] == pytest.approx(accuracy, rel=1e-6)


def test_accuracy_counts_a_zero_reward_as_chance(model_dir, tokenizer, make_args):
    """Before training every implicit reward is exactly 0: accuracy 0.5 (chance), not the share of negatives."""
    rows = grouped_eval_rows(n_pos=3, n_neg=9)
    trainer = ULMATrainer(model=model_dir, args=make_args(), train_dataset=toy_dataset(8), processing_class=tokenizer)
    result = trainer.evaluate(Dataset.from_list(rows))
    assert result["eval_rewards/margins"] == 0.0
    assert result["eval_rewards/accuracies"] == 0.5


def test_precompute_cache_is_keyed_by_what_decides_the_negatives(model_dir, tokenizer, make_args, tmp_path):
    """The same rows and model with a higher `positive_threshold`: rows that became negatives need reference values,
    which the first precompute (where they were positives, so not scored) did not compute: no cache hit. The rows
    are on disk, as from `load_dataset` (an in-memory dataset's cache is never reused)."""
    rows = Dataset.from_list([r | {"score": s} for r, s in zip(toy_rows(8), [1.0, 0.6, 0.2, 0.9, 1.0, 0.0, 0.7, 0.4])])
    rows.remove_columns("label").save_to_disk(str(tmp_path / "rows"))
    args = make_args(score_type="continuous", positive_threshold=0.5)
    trainer = ULMATrainer(model=model_dir, args=args, train_dataset=load_from_disk(str(tmp_path / "rows")),
                          processing_class=tokenizer)
    trainer.precompute_ref_logps = True
    found = {}
    for threshold in (0.5, 1.0):
        trainer.options.positive_threshold = threshold
        trainer.data_collator.negatives_below = threshold  # the collator lays out the negatives it gives
        found[threshold] = trainer._precompute_ref_logps(trainer.train_dataset, "train", 4)["ref_logps"]
    assert [math.isnan(ref) for ref in found[0.5]] == [True, True, False, True, True, False, True, False]
    assert [math.isnan(ref) for ref in found[1.0]] == [True, False, False, False, True, False, False, False]


def test_an_eval_split_named_train_is_scored_on_every_row(model_dir, tokenizer, make_args):
    trainer = ULMATrainer(
        model=model_dir, args=make_args(precompute_ref_log_probs=True), train_dataset=toy_dataset(8),
        eval_dataset={"train": toy_dataset(8, seed=1)}, processing_class=tokenizer,
    )
    assert all(math.isfinite(ref) for ref in trainer.eval_dataset["train"]["ref_logps"])


def test_deprecated_pad_token_option_and_tokenizer_revision(model_dir, tokenizer, make_args, monkeypatch):
    from trl_ulma import preparation

    trainer = ULMATrainer(model=model_dir, args=make_args(pad_token="<|im_end|>"), train_dataset=toy_dataset(8),
                          processing_class=tokenizer)
    assert trainer.data_collator.pad_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>") != 0
    with pytest.raises(ValueError, match="not in the tokenizer's vocabulary"):
        ULMATrainer(model=model_dir, args=make_args(pad_token="<|nope|>"), train_dataset=toy_dataset(8),
                    processing_class=tokenizer)

    seen = {}
    load = preparation.AutoProcessor.from_pretrained

    def spy(name, **kwargs):
        seen.update(kwargs)
        return load(name, **{key: value for key, value in kwargs.items() if key != "revision"})

    monkeypatch.setattr(preparation.AutoProcessor, "from_pretrained", spy)
    ULMATrainer(model=model_dir, args=make_args(model_init_kwargs={"revision": "v1"}), train_dataset=toy_dataset(8))
    assert seen["revision"] == "v1"


def unbalanced_rows(positives: int = 3, negatives: int = 7) -> Dataset:
    rows = toy_rows(4 * (positives + negatives))
    return Dataset.from_list([r for r in rows if r["label"]][:positives] + [r for r in rows if not r["label"]][:negatives])


def test_mean_baseline_sets_log_z_to_the_prior_log_odds(model_dir, tokenizer, make_args, caplog):
    """3 positives in 10, defaults (score_baseline="mean"): log_z = log(0.3 / 0.7), and at the reference (h = 0) the
    loss is the labels' entropy, the best an uninformative fit can do (with log_z = 0 it would be log 2)."""
    import logging

    args = make_args(PointwiseDPOConfig, per_device_train_batch_size=10)
    with caplog.at_level(logging.WARNING):
        trainer = PointwiseDPOTrainer(model=model_dir, args=args, train_dataset=unbalanced_rows(),
                                      processing_class=tokenizer)
    assert trainer.targets.log_z == pytest.approx(math.log(0.3 / 0.7), rel=1e-12)
    assert "Unbalanced labels" not in caplog.text
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(10)])
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    assert loss.item() == pytest.approx(-(0.3 * math.log(0.3) + 0.7 * math.log(0.7)), rel=1e-5)
    # The uninformed gradient pushes positives up and negatives down with equal total weight: sum of d loss / d u = 0
    u = torch.full((10,), trainer.targets.log_z, requires_grad=True)
    z = batch["score"]
    (-(z * F.logsigmoid(u) + (1 - z) * F.logsigmoid(-u))).sum().backward()
    assert u.grad.sum().item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "trainer_class, config_class, overrides, warned",
    [
        (PointwiseDPOTrainer, PointwiseDPOConfig, {"score_baseline": "none"}, True),
        (PointwiseDPOTrainer, PointwiseDPOConfig, {"score_baseline": "none", "reduction": "per_group"}, False),
        (PointwiseDPOTrainer, PointwiseDPOConfig, {}, False),  # the default baseline is the prior
        (ULMATrainer, ULMAConfig, {"reduction": "mean", "score_baseline": "none"}, False),  # no reward fit on positives
    ],
)
def test_unbalanced_labels_warn_with_the_fix(trainer_class, config_class, overrides, warned, model_dir, tokenizer,
                                             make_args, caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        trainer_class(model=model_dir, args=make_args(config_class, **overrides), train_dataset=unbalanced_rows(),
                      processing_class=tokenizer)
    assert ("Unbalanced labels: 3 of 10 training rows are positive" in caplog.text) == warned
    if warned:
        assert "score_baseline='mean'" in caplog.text and "reduction='per_group'" in caplog.text


@pytest.mark.parametrize(
    "score_column, overrides, warned",
    [
        ("label", {}, True),  # labels all 0: every implicit reward pushed one way
        ("score", {"score_baseline": "none"}, True),  # scores against 0: every one pulled up
        ("score", {}, False),  # scores around their mean: each row toward its own side (the reward loop's rows)
        ("score", {"score_baseline": "prompt"}, False),
        ("score", {"score_baseline": 0.0}, True),  # a fixed baseline below every score: all pulled up
        ("score", {"reduction": "per_group"}, True),  # the negatives' group is the whole loss
    ],
)
def test_a_missing_group_warns_only_where_it_changes_the_fit(score_column, overrides, warned, model_dir, tokenizer,
                                                             make_args, caplog):
    import logging

    values = [0.0] * 4 if score_column == "label" else [0.1, 0.4, 0.5, 0.9]
    rows = toy_rows(8)[::2]
    data = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"], score_column: v}
                              for r, v in zip(rows, values, strict=True)])
    with caplog.at_level(logging.WARNING):
        PointwiseDPOTrainer(model=model_dir, args=make_args(PointwiseDPOConfig, **overrides), train_dataset=data,
                            processing_class=tokenizer)
    assert ("The training set has no positive examples" in caplog.text) == warned


def test_per_group_reduction_keeps_labels_at_the_papers_log_z(model_dir, tokenizer, make_args):
    """Each group weighing half, an uninformed fit of labels lands at 0.5 whatever the share of positives: log_z
    stays 0 (ULMA's default, and point-wise DPO with reduction="per_group")."""
    for trainer_class, config_class, overrides in ((ULMATrainer, ULMAConfig, {}),
                                                   (PointwiseDPOTrainer, PointwiseDPOConfig, {"reduction": "per_group"})):
        trainer = trainer_class(model=model_dir, args=make_args(config_class, **overrides),
                                train_dataset=unbalanced_rows(), processing_class=tokenizer)
        assert trainer.targets.log_z == 0.0


def test_balanced_labels_do_not_warn_and_keep_the_papers_log_z(model_dir, tokenizer, make_args, caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        trainer = PointwiseDPOTrainer(model=model_dir, args=make_args(PointwiseDPOConfig, score_baseline="none"),
                                      train_dataset=unbalanced_rows(5, 5), processing_class=tokenizer)
    assert "Unbalanced labels" not in caplog.text
    default = PointwiseDPOTrainer(model=model_dir, args=make_args(PointwiseDPOConfig),
                                  train_dataset=unbalanced_rows(5, 5), processing_class=tokenizer)
    assert trainer.targets.log_z == 0.0
    assert abs(default.targets.log_z) < 1e-12  # on balanced labels "mean" is the paper's 0


def scored_rows(scores: list[float], prompts: list[int] | None = None) -> Dataset:
    rows = toy_rows(2 * len(scores))
    prompts = prompts or list(range(len(scores)))
    return Dataset.from_list([{"prompt": rows[2 * p]["prompt"], "completion": rows[2 * i]["completion"], "score": s}
                              for i, (s, p) in enumerate(zip(scores, prompts))])


@pytest.mark.parametrize("trainer_class, config_class", [(PointwiseDPOTrainer, PointwiseDPOConfig),
                                                          (ULMATrainer, ULMAConfig)])
def test_continuous_scores_are_centred_and_scaled(trainer_class, config_class, model_dir, tokenizer, make_args):
    """Defaults on scores 0, 0.25, 0.5, 1, 1: scale = beta / std, log_z = scale * baseline, the baseline being the
    mean as the loss weighs the rows (point-wise DPO: over all rows; ULMA's per-group reduction: halfway between the
    positives' mean 1 and the negatives' 0.25). At the reference the point-wise DPO loss is then
    mean (scale * (z - mean))^2 = beta^2 exactly."""
    scores = [0.0, 0.25, 0.5, 1.0, 1.0]
    mean = sum(scores) / 5
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / 5)
    args = make_args(config_class, beta=0.2, per_device_train_batch_size=5)
    trainer = trainer_class(model=model_dir, args=args, train_dataset=scored_rows(scores), processing_class=tokenizer)
    assert trainer.options.score_type == "continuous"
    assert trainer.targets.score_scale == pytest.approx(0.2 / std, rel=1e-12)
    baseline = mean if trainer_class is PointwiseDPOTrainer else (1.0 + 0.25) / 2
    assert trainer.targets.log_z == pytest.approx(0.2 / std * baseline, rel=1e-12)
    if trainer_class is PointwiseDPOTrainer:
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(5)])
        trainer.model.train()
        assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx(0.2**2, rel=1e-5)
    paper = trainer_class(model=model_dir, args=make_args(config_class, score_baseline="none", score_scale="1.0"),
                          train_dataset=scored_rows(scores), processing_class=tokenizer)
    assert paper.targets.score_scale == 1.0 and paper.targets.log_z == 0.0


def test_prompt_baseline_gives_each_row_its_prompts_mean(model_dir, tokenizer, make_args):
    """score_baseline="prompt": rows of a prompt rated several times get (sum + overall mean) / (n + 1); a prompt
    rated once gets the overall mean. Labels: log_z = logit(baseline)."""
    scores, prompts = [1.0, 0.0, 0.0, 1.0, 0.0], [0, 0, 0, 1, 2]
    trainer = PointwiseDPOTrainer(model=model_dir, args=make_args(PointwiseDPOConfig, score_baseline="prompt",
                                                                  score_type="binary"),
                                  train_dataset=scored_rows(scores, prompts), processing_class=tokenizer)
    mean = 0.4
    grouped = (1.0 + mean) / 4
    expected = [grouped, grouped, grouped, mean, mean]
    logit = [math.log(b / (1 - b)) for b in expected]
    assert trainer.train_dataset["log_z"] == pytest.approx(logit, rel=1e-6)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(5)])
    assert torch.allclose(batch["log_z"], torch.tensor(logit), rtol=1e-6)
    trainer.train()  # the per-row log_z reaches the loss


def test_baseline_and_scale_options_are_checked(make_args):
    with pytest.raises(ValueError, match="score_baseline` must be one of"):
        make_args(PointwiseDPOConfig, score_baseline="median")
    with pytest.raises(ValueError, match="score_scale` must be 'auto' or > 0"):
        make_args(PointwiseDPOConfig, score_scale="-1")
    assert make_args(PointwiseDPOConfig, score_baseline="0.3").score_baseline == 0.3


def test_bookkeeping_floats_keep_their_precision_when_deepspeed_casts_the_batch(model_dir, tokenizer, make_args):
    """Under DeepSpeed with bf16, transformers casts a batch's floats to bf16: scores, reference log-probs and
    counts must not be (a summed reference log-prob of -187.3 would become -187.0, a count of 257 256)."""
    trainer = PointwiseDPOTrainer(model=model_dir, args=make_args(PointwiseDPOConfig), train_dataset=toy_dataset(8),
                                  processing_class=tokenizer)
    trainer._prepare_input = lambda data: {key: value.to(torch.bfloat16) if value.is_floating_point() else value
                                           for key, value in data.items()}  # what DeepSpeed bf16 does to them
    batch = {"input_ids": torch.tensor([[1, 2]]), "attention_mask": torch.tensor([[1, 1]]),
             "score": torch.tensor([0.699]), "ref_logps": torch.tensor([-187.3]),
             "group_counts": torch.tensor([257.0, 1.0, 258.0, 3.0]), "step_counts": torch.tensor([257.0, 1.0]),
             "pixel_values": torch.tensor([0.3])}
    prepared = trainer._prepare_inputs(batch)
    for key in ("score", "ref_logps", "group_counts", "step_counts"):
        assert prepared[key].dtype == torch.float32 and torch.equal(prepared[key], batch[key])
    assert prepared["pixel_values"].dtype == torch.bfloat16  # model inputs still follow DeepSpeed's dtype


def test_baseline_comes_from_the_training_set_only(model_dir, tokenizer, make_args):
    """An eval split named "train" (prepared after the training set) does not change the baseline, and accuracy
    counts the sign of beta * h, so it is 0.5 before training even with log_z at the prior log-odds."""
    trainer = PointwiseDPOTrainer(
        model=model_dir, args=make_args(PointwiseDPOConfig), train_dataset=unbalanced_rows(),
        eval_dataset={"train": unbalanced_rows(6, 2)}, processing_class=tokenizer,
    )
    assert trainer.targets.log_z == pytest.approx(math.log(0.3 / 0.7))
    assert trainer.evaluate()["eval_rewards/accuracies"] == 0.5


def test_a_config_on_a_machine_without_a_gpu_trains_in_float32(monkeypatch):
    """TRL's configs default to bf16, which raises without an accelerator unless use_cpu=True: ours fall back."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = ULMAConfig(output_dir="x")
    assert args.bf16 is False and args.fp16 is False
    assert ULMAConfig(output_dir="x", use_cpu=True).bf16 is True  # TRL's default where bf16 runs (autocast on CPU)
    with pytest.raises(ValueError, match="bf16"):
        DPOConfig(output_dir="x")  # what TRL does: the reason for the fallback


def test_a_model_built_in_memory_trains_without_ref_model(tokenizer, make_args):
    """DPOTrainer would reload the reference from the model's empty name (OSError): the reference is a frozen copy."""
    model = build_tiny_model(tokenizer)
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = ULMATrainer(model=model, args=make_args(ULMAConfig), train_dataset=toy_dataset(16),
                          processing_class=tokenizer)
    reference = trainer.ref_model
    assert reference is not None and reference is not trainer.model
    assert not any(p.requires_grad for p in reference.parameters())
    trainer.train()
    moved = [name for name, p in trainer.model.named_parameters() if not torch.equal(p, initial[name])]
    assert moved and all(torch.equal(p, initial[name]) for name, p in reference.named_parameters())
    with pytest.raises(ValueError, match="pass `processing_class=tokenizer`"):
        ULMATrainer(model=build_tiny_model(tokenizer), args=make_args(ULMAConfig), train_dataset=toy_dataset(4))


def test_fsdp_is_predicted_as_accelerate_decides_it(monkeypatch):
    """A model built in memory needs a reference copy under FSDP even with precomputed log-probs (TRL keeps a
    reference there); the trainer knows before accelerate is built whether FSDP will run."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from trl_ulma.workarounds import fsdp_will_shard

    def args(kind: DistributedType, fsdp: str = "") -> SimpleNamespace:
        return SimpleNamespace(fsdp=fsdp, distributed_state=SimpleNamespace(distributed_type=kind))

    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    assert not fsdp_will_shard(args(DistributedType.MULTI_GPU))
    assert fsdp_will_shard(args(DistributedType.MULTI_GPU, fsdp="full_shard"))
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch --config_file fsdp2.yaml` sets
    assert fsdp_will_shard(args(DistributedType.MULTI_GPU)) and fsdp_will_shard(args(DistributedType.MULTI_XPU))
    for kind in (DistributedType.NO, DistributedType.MULTI_CPU):  # one process, or CPUs: accelerate runs DDP
        assert not fsdp_will_shard(args(kind))


def test_a_model_built_in_memory_keeps_a_reference_under_fsdp_with_precomputed_log_probs(
    tokenizer, make_args, monkeypatch
):
    from trl_ulma import reference

    model = build_tiny_model(tokenizer)
    precompute = make_args(ULMAConfig, precompute_ref_log_probs=True)
    trainer = ULMATrainer(model=model, args=precompute, train_dataset=toy_dataset(8), processing_class=tokenizer)
    assert trainer.ref_model is None  # the precompute is the reference
    monkeypatch.setattr(reference, "fsdp_will_shard", lambda args: True)
    trainer = ULMATrainer(model=model, args=precompute, train_dataset=toy_dataset(8), processing_class=tokenizer)
    assert trainer.ref_model is not None and trainer.ref_model is not trainer.model
    assert all(torch.equal(p, q) for p, q in zip(trainer.ref_model.parameters(), model.parameters(), strict=True))
