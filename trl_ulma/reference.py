"""The reference log-probs: one forward with adapters off or the reference model, on the rows the objective reads
(`Objective.reference_scope`), precomputed once and cached on disk, or computed per batch. A mixin of
`PointwiseDPOTrainer` (it expects a `trl.DPOTrainer` after it in the MRO), replacing DPOTrainer's paired versions."""

import contextlib
import copy
import os
from typing import Any

import torch
from accelerate.utils import broadcast_object_list, is_peft_model, tqdm
from datasets import Dataset, IterableDataset
from datasets.fingerprint import Hasher
from torch.utils.data import DataLoader
from transformers.integrations import is_deepspeed_zero3_enabled
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import get_config_model_id, use_adapter

from .collator import select_rows
from .losses import sequence_logps
from .workarounds import fsdp_will_shard


def reference_model(model, ref_model, args, peft_config, owner: str) -> tuple[Any, bool]:
    """The reference model to hand `DPOTrainer`, and whether it is a copy made here. A model built in memory has no
    name for DPOTrainer to load its reference from: it is copied as passed, where DPOTrainer would build one (no
    PEFT, whose reference is the model with adapters off, and no precomputed log-probs, except under FSDP, where the
    policy is sharded only in `train` and the precompute needs a reference)."""
    in_memory = not isinstance(model, str) and not get_config_model_id(model.config)
    needs_reference = in_memory and ref_model is None and peft_config is None and not is_peft_model(model)
    if not needs_reference or (args.precompute_ref_log_probs and not fsdp_will_shard(args)):
        return ref_model, False
    if is_deepspeed_zero3_enabled():
        raise ValueError(
            f"{owner}: under DeepSpeed ZeRO-3 a model built in memory is partitioned and cannot be copied as the "
            "reference: pass `ref_model=` (or the model's path as `model`)."
        )
    return copy.deepcopy(model).requires_grad_(False).eval(), True


class ReferenceLogps:
    """Summed reference log-probs per row: `compute_ref_log_probs` (a padded batch), `_reference_logps` (the rows
    the loss reads, NaN elsewhere) and `_precompute_ref_logps` (a ``ref_logps`` column, cached by dataset and model)."""

    def compute_ref_log_probs(self, model, inputs) -> torch.Tensor:
        """Summed reference log-prob of each completion in a padded batch, shape (B,)."""
        adapter_context = contextlib.nullcontext()
        if self.ref_model is None and is_peft_model(self.model):
            # New adapter: the reference is the base model (adapters off); retrained adapter: its frozen "ref" copy
            unwrapped = self.accelerator.unwrap_model(self.model)
            adapter_context = use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
        with (
            torch.no_grad(),
            disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
            adapter_context,
            self.accelerator.autocast(),
        ):
            tokens = self._forward_tokens(model, inputs)
        return sequence_logps(tokens.log_probs, tokens.mask, length_normalize=False)

    def _precompute_ref_logps(self, dataset: Dataset, name: str, batch_size: int) -> Dataset:
        """Add a ``ref_logps`` column (summed reference log-probs), cached on disk by dataset and model.

        Rank 0 alone reads and writes the cache; the values reach the other ranks by collectives, never by file: an
        in-memory dataset's cache directory is a per-process temporary directory, and nodes need not share a disk.
        """
        if isinstance(dataset, IterableDataset):
            raise ValueError("`precompute_ref_log_probs=True` needs a map-style Dataset, not an IterableDataset.")
        if "ref_logps" in dataset.column_names:
            return dataset
        mode = "train" if dataset is self.train_dataset else "eval"  # an eval split may be named "train"
        # The collator's truncation decides which tokens are scored and the scope which rows: both key the cache
        key = (
            dataset._fingerprint,
            self._precompute_model_hash if self._zero_stage() != 3 else self._zero3_model_hash(),
            self.args.max_length,
            self.args.truncation_mode,
            self._objective_class.reference_scope(self.options, mode),
            # which rows are negatives, and so scored when the scope is "negatives"
            self.options.positive_threshold,
            self.options.score_type,
        )
        # Rank 0 names the cache and decides whether it exists, so that every rank takes the same branch (only one
        # runs collectives): an in-memory dataset's fingerprint is random, different on each rank
        fingerprint = Hasher.hash(("trl-ulma-ref-logps", key))
        cache_file = dataset._get_cache_file_path(fingerprint)
        cached = [os.path.exists(cache_file)]
        broadcast_object_list(cached, from_process=0)
        if cached[0]:
            values = [list(Dataset.from_file(cache_file)["ref_logps"]) if self.accelerator.is_main_process else None]
            broadcast_object_list(values, from_process=0)
            return dataset.add_column("ref_logps", values[0])

        self._fix_layout()  # before the first batch is collated: the collator lays out every batch
        loader = self.accelerator.prepare(
            DataLoader(dataset, batch_size=batch_size, collate_fn=self.data_collator, shuffle=False)
        )
        if self.ref_model is None and self.is_deepspeed_enabled:
            model = self._inference_engine()
        else:
            model = self.ref_model if self.ref_model is not None else self.model
        logps = [
            self.accelerator.gather_for_metrics(self._reference_logps(model, batch, mode)).cpu()
            for batch in tqdm(loader, desc=f"Computing reference log-probs for the {name} dataset")
        ]
        logps = torch.cat(logps).tolist()  # gathered: the same on every rank
        if self.accelerator.is_main_process:
            Dataset.from_dict({"ref_logps": logps}).map(new_fingerprint=fingerprint, cache_file_name=cache_file)
        return dataset.add_column("ref_logps", logps)

    def _reference_logps(self, model, inputs, mode: str) -> torch.Tensor:
        """Summed reference log-probs (B,), computed only on the rows the loss reads; NaN elsewhere."""
        scope = self._objective_class.reference_scope(self.options, mode)
        if scope == "all":
            return self.compute_ref_log_probs(model, inputs)
        logps = torch.full_like(inputs["score"], float("nan"))
        if scope == "none":
            return logps
        rows = inputs.get("negatives")  # the collator's, on the CPU: no read from the device
        if rows is None:
            rows = (inputs["score"] < self.options.positive_threshold).nonzero().flatten()
        if len(rows) > 0:
            if "negatives_layout" in inputs:  # laid out by the collator: no trimming, no read from the device
                negatives = {"completion_mask": inputs["completion_mask"][rows], "layout": inputs["negatives_layout"]}
            else:
                negatives = select_rows(inputs, rows)
            logps[rows] = self.compute_ref_log_probs(model, negatives).to(logps.dtype)
        elif self.is_fsdp_enabled or (self.is_deepspeed_enabled and self._zero_stage() == 3):
            # There a forward gathers parameters across ranks: every rank runs one, even with no row to score
            self.compute_ref_log_probs(model, select_rows(inputs, rows.new_zeros(1)))
        return logps
