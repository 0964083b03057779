"""Two ranks on CPU (gloo), launched with the shipped accelerate and DeepSpeed configs, equal one process.

Every launch runs `tests/scripts/train_distributed.py`, whose rows are ordered so that one rank gets no negatives
while the other gets no positives, and one step has no negatives at all. One process reading the same rows (2 ranks
x 2 rows = 1 process x 4 rows per step) is the reference: the logged losses, the reloaded checkpoints and the
gathered metrics must match it. A collective that one rank skips would hang: the launch timeout turns that into a
failure. Each shipped config is run as is, except for what a CPU needs (`cpu_config`). accelerate runs an FSDP config
on CPU processes as plain DDP; the training script switches its trainers' accelerators to FSDP (torch's
`fully_shard` runs over gloo), and the engine asserted is the one the model was wrapped in.
"""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml


ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "tests/scripts/train_distributed.py"
TIMEOUT = 420
# Rows per global step, rank 0 + rank 1 (the script's ORDER): a metric from rank 0 alone would differ
POSITIVES = [2 + 0, 2 + 2, 1 + 1, 0 + 1]
NEGATIVES = [0 + 2, 0 + 0, 1 + 1, 2 + 1]

# Both trainers, with and without LoRA, with and without precomputed reference log-probs on each backend; the two
# halves together are the full cross product
CASES_A = ["ulma", "ulma+peft+precompute", "pointwise_dpo+peft", "pointwise_dpo+precompute"]
CASES_B = ["ulma+peft", "ulma+precompute", "pointwise_dpo", "pointwise_dpo+peft+precompute"]
# Evaluation before, during and after training, for the three trainers (full fine-tuning and LoRA across backends)
EVAL_CASES = ["ulma+eval", "pointwise_dpo+eval", "unlikelihood+eval"]
EVAL_CASES_PEFT = ["ulma+peft+eval", "pointwise_dpo+peft+eval", "unlikelihood+eval"]
# accelerate config: (engine, ZeRO stage, cases)
LAUNCHES = {
    "multi_gpu": ("DistributedDataParallel", None, CASES_A + ["ulma+resume", "ulma+nolog", *EVAL_CASES]),
    "zero1": ("DeepSpeedEngine", 1, ["ulma+peft", "pointwise_dpo+precompute", *EVAL_CASES]),
    "zero2": ("DeepSpeedEngine", 2, CASES_B + ["ulma+nolog", *EVAL_CASES_PEFT]),
    "zero3": ("DeepSpeedEngine", 3, CASES_A + ["ulma+peft+resume", "ulma+nolog", *EVAL_CASES]),
    "fsdp2": ("FSDP2", None, CASES_A + CASES_B + ["ulma+resume", "ulma+nolog", *EVAL_CASES_PEFT]),
}
REFERENCE_CASES = sorted(
    {case.replace("+resume", "").replace("+nolog", "") for _, _, cases in LAUNCHES.values() for case in cases}
    | set(CASES_B)
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(command: list[str], env: dict | None = None) -> list:
    """Run from the repository root (the configs name deepspeed_configs/ relative to it); its RESULT lines."""
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return [json.loads(line.removeprefix("RESULT ")) for line in done.stdout.splitlines() if line.startswith("RESULT ")]


def train(
    command: list[str], model_dir: str, output_dir: Path, batch_size: int, cases: list[str], env=None, eval_batch_size=3,
    layout: str | None = None,
) -> dict:
    """Run the training script (``command`` starts it) on ``cases``; its results by case."""
    options = ["--model", model_dir, "--output-dir", str(output_dir), "--batch-size", str(batch_size),
               "--eval-batch-size", str(eval_batch_size), *(["--layout", layout] if layout else []), *cases]
    return {result["case"]: result for result in run(command + options, env)}


def cpu_config(name: str, directory: Path, num_processes: int = 2, deepspeed_config_file: str | None = None) -> Path:
    """The shipped `accelerate_configs/<name>.yaml` with what a CPU run here needs: CPU, fp32, a free port."""
    config = yaml.safe_load((ROOT / "accelerate_configs" / f"{name}.yaml").read_text())
    config.update(use_cpu=True, num_processes=num_processes, main_process_port=free_port())
    if "mixed_precision" in config:  # DeepSpeed configs have none: their JSON's "auto" follows the training args
        config["mixed_precision"] = "no"
    if deepspeed_config_file is not None:
        config["deepspeed_config"]["deepspeed_config_file"] = deepspeed_config_file
    path = directory / f"{name}-cpu.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def launch(config: Path, script: str = SCRIPT) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), script]


def load_weights(checkpoint: str) -> dict[str, torch.Tensor]:
    """A checkpoint's weights, reloaded as a user would: the model, or the base model with its adapters."""
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    peft = (Path(checkpoint) / "adapter_config.json").exists()
    return (AutoPeftModelForCausalLM if peft else AutoModelForCausalLM).from_pretrained(checkpoint).state_dict()


def assert_same_training(result: dict, expected: dict) -> None:
    """Gathered counts, finite metrics, the reference's losses, and a last checkpoint that reloads to its weights."""
    logs = result["logs"]
    assert [entry["step"] for entry in logs] == [1, 2, 3, 4]
    # Counts are per optimizer step: all ranks and all micro-batches of gradient accumulation
    assert [entry["count/positive"] for entry in logs] == POSITIVES
    assert [entry["count/negative"] for entry in logs] == NEGATIVES
    assert all(math.isfinite(value) for entry in logs for value in entry.values()), logs
    assert [entry["loss"] for entry in logs] == pytest.approx([entry["loss"] for entry in expected["logs"]], abs=1e-5)
    # Real tokens seen so far, counted on after a resume
    assert [entry["num_tokens"] for entry in logs] == [entry["num_tokens"] for entry in expected["logs"]]
    if "resume" not in result["case"]:  # the final `train_loss` is the mean of the logged per-step losses
        assert result["train_loss"] == pytest.approx(sum(entry["loss"] for entry in logs) / len(logs), abs=1e-5)
    if "eval" in result["case"]:
        assert_same_evaluation(result["evals"], expected["evals"])
    final, found = load_weights(expected["checkpoint"]), load_weights(result["checkpoint"])
    middle = load_weights(expected["checkpoint"].replace("checkpoint-4", "checkpoint-2"))
    assert_same_weights(found, final, middle)


def assert_same_weights(found: dict, final: dict, middle: dict, rtol: float = 1e-2) -> None:
    """Each tensor of ``found`` within ``rtol`` of ``final`` relative to how far ``final`` moved in its last steps
    (from ``middle``), in norm; a tensor that did not move (a LoRA run's base weights) equal to 1e-6.

    Not element by element: Adam divides each element's gradient by its own running scale, so an element whose
    gradient is rounding noise moves by up to the learning rate either way, and two exact-in-math runs that round
    differently (one process against two ranks) end apart on such elements: on one Intel Xeon 3.1e-5 on 1 of 512
    elements (beyond the elementwise 2e-5 this test had), 3.4e-4 of the tensor's last update in norm. A rank training
    on its own rows, a loss weighted differently or a resume without the optimizer's state move whole tensors away
    by well over 1% of their update."""
    assert found.keys() == final.keys()
    for name, weights in final.items():
        moved = (weights - middle[name]).norm().item()
        error = (found[name] - weights).norm().item()
        assert error <= rtol * moved + 1e-6, (name, error, moved)
    # Not vacuous: the last two steps move the weights far beyond rounding
    assert max((final[name] - middle[name]).abs().max().item() for name in final) > 1e-3


def assert_same_evaluation(evals: list[dict], expected: list[dict]) -> None:
    """Before, at steps 2 and 4, and after training: the same figures as the reference, whose eval batches differ."""
    assert [entry.get("step", "end") for entry in evals[1:-1]] == [2, 4]
    assert len(evals) == len(expected) == 4
    for found, wanted in zip(evals, expected, strict=True):
        timings = ("_runtime", "_per_second", "_preparation_time")
        metrics = {key: value for key, value in wanted.items() if key.startswith("eval_") and not key.endswith(timings)}
        assert "eval_loss" in metrics and "eval_count/positive" in metrics
        assert {key: found[key] for key in metrics} == pytest.approx(metrics, abs=2e-5)
    # 6 positives + 5 negatives, each counted once although the ranks' last batches are padded with repeats
    assert (evals[0]["eval_count/positive"], evals[0]["eval_count/negative"]) == (6, 5)
    if "eval_rewards/accuracies" in evals[0]:  # every implicit reward is 0 before training: chance, not a class share
        assert evals[0]["eval_rewards/accuracies"] == 0.5 and evals[0]["eval_rewards/margins"] == 0.0


@pytest.fixture(scope="module")
def reference(model_dir, tmp_path_factory) -> dict[str, dict]:
    """Every case in one process (the single-GPU config) on padded batches, 4 rows per step (eval batches of 4 rows,
    where the ranks have 3 each); ULMA also resumed, and accumulated. The runs under test use the trainers' default
    layout (shared prompts), so every comparison is also one with the padded path."""
    directory = tmp_path_factory.mktemp("reference")
    config = cpu_config("single_gpu", directory, num_processes=1)
    cases = REFERENCE_CASES + ["ulma+resume", "ulma+accumulate"]
    found = train(launch(config), model_dir, directory, 4, cases, eval_batch_size=4, layout="padded")
    assert {(result["world_size"], result["zero_stage"]) for result in found.values()} == {(1, None)}
    return found


@pytest.mark.slow
def test_shared_prompt_layout_trains_like_padded_batches(reference, model_dir, tmp_path):
    """One process, the default layout: each step's 4 rows share 2 prompts, so they run as 2 prompts with 2
    completions each; losses, evaluations and weights equal the padded reference (PEFT, precompute, accumulation)."""
    cases = ["ulma", "pointwise_dpo+precompute", "ulma+peft+eval", "unlikelihood+eval", "pointwise_dpo+peft+eval",
             "ulma+accumulate"]
    config = cpu_config("single_gpu", tmp_path, num_processes=1)
    found = train(launch(config), model_dir, tmp_path / "out", 4, cases, eval_batch_size=4)
    for case in cases:
        assert_same_training(found[case], reference[case])


@pytest.mark.slow
def test_single_process_resume_ends_where_the_uninterrupted_run_does(reference):
    assert_same_training(reference["ulma+resume"], reference["ulma"])


@pytest.mark.slow
def test_gradient_accumulation_trains_like_one_big_batch(reference):
    """2 micro-batches of 2 rows per step train like 1 batch of 4: ULMA's per-group means span the whole step."""
    assert_same_training(reference["ulma+accumulate"], reference["ulma"])


@pytest.mark.slow
@pytest.mark.parametrize("config", LAUNCHES)
def test_two_ranks_match_one_process(config, reference, model_dir, tmp_path):
    engine, stage, cases = LAUNCHES[config]
    found = train(launch(cpu_config(config, tmp_path)), model_dir, tmp_path / "out", 2, cases)
    assert sorted(found) == sorted(cases)
    for case in cases:
        assert (found[case]["world_size"], found[case]["engine"], found[case]["zero_stage"]) == (2, engine, stage)
        if case.endswith("+nolog"):  # nothing logged before the end: the final `train_loss` still averages the ranks
            expected = reference[case.removesuffix("+nolog")]
            mean = sum(entry["loss"] for entry in expected["logs"]) / len(expected["logs"])
            assert found[case]["train_loss"] == pytest.approx(mean, abs=1e-5)
            final = found[case]["final_log"]
            assert final["train_loss"] == pytest.approx(final["loss/sft"] + final["loss/preference"], abs=1e-5)
            continue
        assert_same_training(found[case], reference[case.replace("+resume", "")])


@pytest.mark.slow
def test_zero3_offload(reference, model_dir, tmp_path):
    """Parameters and optimizer states offloaded to CPU memory.

    The shipped JSON names DeepSpeed's CPU Adam, which would compile for minutes here: the test drops it for the
    trainer's own AdamW (the same update), keeping the rest of the file.
    """
    settings = json.loads((ROOT / "deepspeed_configs/zero3_offload.json").read_text())
    assert settings["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert settings["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    del settings["optimizer"]
    settings["zero_force_ds_cpu_optimizer"] = False
    (tmp_path / "zero3_offload.json").write_text(json.dumps(settings))
    config = cpu_config("zero3_offload", tmp_path, deepspeed_config_file=str(tmp_path / "zero3_offload.json"))
    cases = ["ulma", "pointwise_dpo+peft+precompute", "unlikelihood+eval"]
    found = train(launch(config), model_dir, tmp_path / "out", 2, cases)
    for case in cases:
        assert (found[case]["world_size"], found[case]["zero_stage"]) == (2, 3)
        assert_same_training(found[case], reference[case])


FAKE_SRUN = """#!/bin/bash
# srun stand-in: the command once per node of the allocation, every node on this machine
while [[ $1 == -* ]]; do shift; done
pids=()
for ((node = 0; node < SLURM_NNODES; node++)); do
    SLURM_NODEID=$node SLURM_PROCID=$node "$@" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
"""


@pytest.mark.slow
def test_slurm_script_launches_one_machine_per_node(reference, model_dir, tmp_path):
    """scripts/slurm/ulma.slurm on a fake 2-node allocation (1 process per node) with the multi-node config."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {
        "srun": FAKE_SRUN,
        "scontrol": "#!/bin/bash\necho 127.0.0.1\n",  # `scontrol show hostnames`: the first node's address
        "accelerate": f'#!/bin/bash\nexec {sys.executable} -m accelerate.commands.accelerate_cli "$@"\n',
    }.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = os.environ | {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_NNODES": "2",
        "SLURM_JOB_NODELIST": "node[1-2]",
        "GPUS_PER_NODE": "1",
        "MAIN_PROCESS_PORT": str(free_port()),
        "CONFIG": str(cpu_config("multi_node", tmp_path)),
        "SCRIPT": SCRIPT,
    }
    found = train(["bash", "scripts/slurm/ulma.slurm"], model_dir, tmp_path / "out", 2, ["pointwise_dpo"], env)
    assert (found["pointwise_dpo"]["world_size"], found["pointwise_dpo"]["zero_stage"]) == (2, 3)
    assert_same_training(found["pointwise_dpo"], reference["pointwise_dpo"])


@pytest.mark.slow
def test_zero3_precompute_cache_tells_weights_apart(tmp_path):
    """Under ZeRO-3 `state_dict()` holds empty placeholders, yet the precompute cache must still be keyed by the
    weights: new weights in the same model directory must not get the old weights' reference log-probs."""
    command = launch(cpu_config("zero3", tmp_path), "tests/scripts/precompute_cache.py")
    [[old, new, again]] = run(command + ["--model-dir", str(tmp_path / "model"), "--output-dir", str(tmp_path / "out")])
    assert len(old) == len(new) == 8
    assert max(abs(a - b) for a, b in zip(old, new, strict=True)) > 1e-2
    assert again == new
