"""Where the trainer works around accelerate, DeepSpeed, transformers and TRL internals, each with the upstream
behaviour it answers. A mixin of `PointwiseDPOTrainer` (it expects a `trl.DPOTrainer` after it in the MRO).
"""

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from accelerate.logging import get_logger
from accelerate.utils import gather_object
from datasets.fingerprint import Hasher
from trl.models import prepare_deepspeed
from trl.trainer import dpo_trainer

from .collator import EXACT_FLOATS


logger = get_logger(__name__)


@contextmanager
def without_reference_hash() -> Iterator[None]:
    """With ``precompute_ref_log_probs`` on, `DPOTrainer.__init__` hashes every weight to key its cache of reference
    log-probs (trl 1.16: ``self._precompute_model_hash = hash_module(...)``), with no option to skip it; a trainer
    that reads no reference skips the hash (None) inside this block."""
    hash_module = dpo_trainer.hash_module
    dpo_trainer.hash_module = lambda module: None
    try:
        yield
    finally:
        dpo_trainer.hash_module = hash_module


def fsdp_requested() -> bool:
    """Whether the launch asked for FSDP (accelerate's config sets this variable, as does `TrainingArguments.fsdp`)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def fsdp_will_shard(args) -> bool:
    """Whether the trainer's accelerator will run FSDP, decided before it is built as accelerate decides it
    (`AcceleratorState`): asked for, and a launch on GPU-like devices (accelerate's MULTI_GPU, MULTI_XPU, ...: any
    torchrun launch, even of one process), not on CPUs nor a plain one-process run."""
    state = getattr(args, "distributed_state", None)
    if state is None:  # SageMaker model parallelism: no FSDP
        return False
    kind = state.distributed_type.name
    return (bool(args.fsdp) or fsdp_requested()) and kind.startswith("MULTI_") and kind != "MULTI_CPU"


class FrameworkWorkarounds:
    """Evaluation before `train` under DeepSpeed and DDP, the reference's hash under ZeRO-3, exact floats under
    DeepSpeed's half precision, and the final `train_loss` over ranks."""

    _eval_engine = None  # the DeepSpeed engine an evaluation before `train` runs in

    def _say_when_fsdp_is_dropped(self) -> None:
        """accelerate turns an FSDP launch into FSDP only on GPU-like devices: on CPU processes its state stays
        MULTI_CPU and the run is plain DDP, the weights unsharded, without a word. Say it, once."""
        if fsdp_requested() and not self.is_fsdp_enabled:
            engine = "plain DDP" if self.accelerator.num_processes > 1 else "one plain process"
            logger.warning(
                f"The launch asked for FSDP, but accelerate runs it as {engine} on {self.accelerator.device.type} "
                "processes (it shards only on GPUs): the weights are not sharded.",
                main_process_only=True,
            )

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """An evaluation before `train` must leave nothing that `train` mistakes for its own preparation:
        - under DeepSpeed, transformers would wrap the policy in a ZeRO inference engine and keep it as the trainer's
          engine: ZeRO-1/2 refuse that ("ZeRO inference only makes sense with ZeRO Stage 3"), and ZeRO-3 `train`
          reuses it, with no optimizer (`'NoneType' object has no attribute 'backward'`). It runs in
          `_inference_engine` instead, and the trainer's engine stays unbuilt;
        - otherwise, accelerate marks the policy prepared (for evaluation), and `train` then skips preparing it: under
          DDP the policy trains without gradient synchronisation, each rank on its own rows. The mark is undone.
        """
        deepspeed_before_training = self.is_deepspeed_enabled and self.deepspeed is None
        plain_before_training = (
            not self.is_deepspeed_enabled
            and not self.is_fsdp_enabled
            and not getattr(self.model, "_is_accelerate_prepared", False)
        )
        if deepspeed_before_training:
            self._eval_engine = self._inference_engine()
            self.deepspeed = self._eval_engine  # skips transformers' `deepspeed_init(inference=True)`
        try:
            return super().evaluation_loop(
                dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
            )
        finally:
            if deepspeed_before_training:
                self.deepspeed = self._eval_engine = None
            if plain_before_training:
                self._forget_evaluation_preparation()

    def _forget_evaluation_preparation(self) -> None:
        """Undo accelerate's `prepare_model(evaluation_mode=True)` of the policy, so that `train` prepares it (DDP)."""
        model = self.model
        if not getattr(model, "_is_accelerate_prepared", False):
            return
        del model._is_accelerate_prepared
        self.accelerator._models = [m for m in self.accelerator._models if m is not model]
        if "_original_forward" in vars(model):  # mixed precision wrapped `forward` in autocast: `train` does it again
            model.forward = vars(model).pop("_original_forward")
        self.model_wrapped = model

    def _wrap_model(self, model, training=True, dataloader=None):
        if not training and self._eval_engine is not None:
            return self._eval_engine
        return super()._wrap_model(model, training, dataloader)

    def _inference_engine(self):
        """The policy in a DeepSpeed inference engine, for forwards before `train` builds the training engine.

        Before `train`, DeepSpeed parameters are not placed (ZeRO-1/2) or not gathered (ZeRO-3). TRL's
        `prepare_deepspeed` builds an engine on a copy of the DeepSpeed config (stage 0 below ZeRO-3), built once and
        kept apart from the trainer's own engine, which `train` then builds as if nothing had run before.
        """
        if self._precompute_engine is None:
            self._precompute_engine = prepare_deepspeed(self.model, self.accelerator)
        return self._precompute_engine

    def _zero_stage(self) -> int | None:
        plugin = self.accelerator.state.deepspeed_plugin
        return None if plugin is None else plugin.zero_stage

    def _zero3_model_hash(self) -> str:
        """The reference model's hash under ZeRO-3, where TRL's (of `state_dict()`) sees only empty placeholders, the
        same for any weights: each rank hashes its own shards, and the ranks' digests are combined."""
        digest = hashlib.sha256()
        reference = self.ref_model if self.ref_model is not None else self.model
        for name, param in sorted(reference.named_parameters()):
            digest.update(name.encode())
            digest.update(getattr(param, "ds_tensor", param).detach().float().cpu().numpy().tobytes())
        return Hasher.hash(gather_object([digest.hexdigest()]))

    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """transformers casts a batch's floats to DeepSpeed's bf16/fp16: the floats that are not model inputs
        (`collator.EXACT_FLOATS`) go to the device as they are."""
        exact = {key: inputs[key].to(self.args.device) for key in EXACT_FLOATS if key in inputs}
        prepared = super()._prepare_inputs({key: value for key, value in inputs.items() if key not in exact})
        return prepared | exact

    def training_step(self, *args, **kwargs) -> torch.Tensor:
        """The step's loss averaged over ranks (each rank's is its share of the global batch's loss, see
        `get_batch_samples`): the logged losses average the ranks, and so must the final `train_loss`, which
        transformers adds up from this rank's values alone for the steps after the last log."""
        loss = super().training_step(*args, **kwargs)
        return self.accelerator.reduce(loss, reduction="mean")
