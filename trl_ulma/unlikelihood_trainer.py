"""`UnlikelihoodTrainer`: the ULMA paper's unlikelihood baseline, on point-wise data, with no reference model."""

from datasets import Dataset

from .objectives import Unlikelihood
from .pointwise_dpo_trainer import PointwiseDPOTrainer
from .unlikelihood_config import UnlikelihoodConfig
from .workarounds import without_reference_hash


UNLIKELIHOOD_PAPER = {
    "title": "Neural Text Generation with Unlikelihood Training",
    "id": "1908.04319",
    "citation": """\
@inproceedings{welleck2020neural,
    title        = {{Neural Text Generation With Unlikelihood Training}},
    author       = {Sean Welleck and Ilia Kulikov and Stephen Roller and Emily Dinan and Kyunghyun Cho and Jason Weston},
    year         = 2020,
    booktitle    = {International Conference on Learning Representations}
}""",
}


class UnlikelihoodTrainer(PointwiseDPOTrainer):
    """Unlikelihood training: likelihood up on positives, down on negatives; no reference model, no KL.

    Same data API as `PointwiseDPOTrainer` (point-wise rows or DPO pairs); the loss options are in
    `UnlikelihoodConfig`. No reference model is loaded or run: passing `ref_model` raises, reward metrics are not
    logged.

    Example:
    ```python
    >>> from trl_ulma import UnlikelihoodConfig, UnlikelihoodTrainer
    >>> trainer = UnlikelihoodTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", args=UnlikelihoodConfig("out"),
    ...                               train_dataset=dataset)
    >>> trainer.train()
    ```
    """

    _tag_names = ["trl", "trl-ulma", "unlikelihood"]
    _name = "Unlikelihood"
    _paper = UNLIKELIHOOD_PAPER
    _config_class = UnlikelihoodConfig
    _objective_class = Unlikelihood

    def __init__(self, model, ref_model=None, args: UnlikelihoodConfig | None = None, *positional, **kwargs):
        """Arguments as `PointwiseDPOTrainer`'s; ``ref_model`` must stay None (checked before DPOTrainer loads one)."""
        if ref_model is not None:
            raise ValueError("UnlikelihoodTrainer uses no reference model: leave `ref_model` unset.")
        if args is not None and not args.precompute_ref_log_probs:
            raise ValueError(
                f"`precompute_ref_log_probs=False` would make DPOTrainer load a reference model that unlikelihood "
                f"training never reads. Use `UnlikelihoodConfig` (got {type(args).__name__})."
            )
        # `precompute_ref_log_probs=True` keeps DPOTrainer from loading a reference model; it would also hash every
        # weight at start-up to key a reference cache this trainer never reads
        with without_reference_hash():
            super().__init__(model, None, args, *positional, **kwargs)
        # With precompute on, DPOTrainer kept no reference model; with it off, batches need no `ref_logps` column
        self.precompute_ref_logps = False

    def _precompute_ref_logps(self, dataset: Dataset, name: str, batch_size: int) -> Dataset:
        return dataset  # the loss reads no reference log-prob
