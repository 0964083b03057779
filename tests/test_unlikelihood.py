"""UnlikelihoodTrainer: the loss through the trainer, training, and the absence of any reference model."""

import pytest
import torch
from transformers import AutoModelForCausalLM
from trl import DPOConfig
from trl.trainer import dpo_trainer

from trl_ulma.testing import toy_dataset
from trl_ulma.unlikelihood_config import UnlikelihoodConfig
from trl_ulma.unlikelihood_trainer import UnlikelihoodTrainer


def token_logps(model, batch):
    """Independent reference: plain forward, full log-softmax, next-token log-prob and mask of completion tokens."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    logps = torch.log_softmax(logits.float(), -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    return logps, batch["completion_mask"][:, 1:].float()


@pytest.mark.parametrize("length_normalize", [True, False])
@pytest.mark.parametrize("form", ["sequence", "token"])
def test_loss_matches_independent_computation(form, length_normalize, model_dir, tokenizer, make_args):
    policy = AutoModelForCausalLM.from_pretrained(model_dir)
    args = make_args(UnlikelihoodConfig, unlikelihood_form=form, length_normalize=length_normalize)
    trainer = UnlikelihoodTrainer(model=policy, args=args, train_dataset=toy_dataset(8), processing_class=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in (0, 1, 2, 3, 5)])  # 3 positives, 2 negatives
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)

    logps, mask = token_logps(policy, batch)
    length = mask.sum(1) if length_normalize else torch.ones(len(mask))
    positive = batch["score"] >= 1.0
    assert positive.tolist() == [True, False, True, False, False]
    if form == "sequence":  # -mean over positives of log pi + mean over negatives of log pi
        seq = (logps * mask).sum(1) / length
        expected = -seq[positive].mean() + seq[~positive].mean()
    else:  # -log p on positive tokens, -log(1 - p) on negative tokens, per row, then per group
        nll = -(logps * mask).sum(1) / length
        unlikely = -(torch.log1p(-logps.exp()) * mask).sum(1) / length
        expected = nll[positive].mean() + unlikely[~positive].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)


def test_trains_without_reference(model_dir, tokenizer, make_args, monkeypatch):
    loads = []
    original = dpo_trainer.create_model_from_path
    monkeypatch.setattr(dpo_trainer, "create_model_from_path", lambda *a, **k: loads.append(a) or original(*a, **k))
    args = make_args(UnlikelihoodConfig, max_steps=3)
    trainer = UnlikelihoodTrainer(model=model_dir, args=args, train_dataset=toy_dataset(16), processing_class=tokenizer)
    assert loads == [(model_dir,)]  # the policy, and no reference
    assert trainer.ref_model is None
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    assert all(not torch.equal(p, before[name]) for name, p in trainer.model.named_parameters())
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 3
    for entry in logs:
        assert not any(key.startswith("rewards/") for key in entry)
        assert entry["loss"] == pytest.approx(entry["loss/sft"] + entry["loss/preference"], rel=1e-5)
    assert trainer.ref_model is None
    metrics = trainer.evaluate(eval_dataset=toy_dataset(8, seed=1))  # no reference needed after training either
    assert metrics["eval_loss"] == pytest.approx(metrics["eval_loss/sft"] + metrics["eval_loss/preference"], rel=1e-5)
    assert not any(key.startswith("eval_rewards/") for key in metrics)


def test_refuses_a_reference(model_dir, tokenizer, make_args):
    with pytest.raises(ValueError, match="no reference model"):
        UnlikelihoodTrainer(
            model=model_dir,
            ref_model=AutoModelForCausalLM.from_pretrained(model_dir),
            args=make_args(UnlikelihoodConfig),
            train_dataset=toy_dataset(8),
            processing_class=tokenizer,
        )
    with pytest.raises(ValueError, match="precompute_ref_log_probs"):
        UnlikelihoodConfig(output_dir="out", use_cpu=True, precompute_ref_log_probs=False)
    with pytest.raises(ValueError, match="Use `UnlikelihoodConfig`"):
        UnlikelihoodTrainer(
            model=model_dir, args=make_args(DPOConfig), train_dataset=toy_dataset(8), processing_class=tokenizer
        )
    with pytest.raises(ValueError, match="unlikelihood_form"):
        UnlikelihoodConfig(output_dir="out", use_cpu=True, unlikelihood_form="bogus")


def test_no_weight_is_hashed_at_start_up(model_dir, tokenizer, make_args, monkeypatch):
    """No reference model, so no reference cache to key: DPOTrainer's start-up hash of every weight is skipped."""
    hashed = []

    def recorder(module):
        return hashed.append(module) or "hash"

    monkeypatch.setattr(dpo_trainer, "hash_module", recorder)
    trainer = UnlikelihoodTrainer(model=model_dir, args=make_args(UnlikelihoodConfig), train_dataset=toy_dataset(8),
                                  processing_class=tokenizer)
    assert hashed == [] and trainer.ref_model is None
    assert dpo_trainer.hash_module is recorder  # TRL's function is back for the other trainers
    trainer.train()
    assert hashed == []
    with pytest.raises(ValueError, match="train_dataset"):
        UnlikelihoodTrainer(model=model_dir, args=make_args(UnlikelihoodConfig), train_dataset=None)
    assert dpo_trainer.hash_module is recorder  # also after a failed start
