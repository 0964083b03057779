#!/usr/bin/env bash
# The GPU check, on one GPU in at most about 9 minutes, bf16: the HH-length throughput table (every layout of ULMA and
# point-wise DPO against TRL's DPOTrainer and KTOTrainer at 64 rows a batch, with sdpa; then the shared-prompt layout
# through FlexAttention's block mask) and the layouts' bf16 exactness against padded batches (sdpa and FlexAttention,
# whose backward runs only on a GPU), on SmolLM2-135M-Instruct's architecture with random weights. Each part has its
# own time limit (500 s in all, after about a minute of install and model build), so one that fails or runs long does
# not cost the others; the script names the parts that failed and then exits 1. Prepare here first:
#     bash benchmarks/gpu_prepare.sh
# then on the device machine (the `device` tool): command "bash benchmarks/gpu.sh", carry [".whl", ".gpu-model"],
# timeout_s 590. Results land in $OUT (and benchmarks/results/ there): copy them into benchmarks/results/ here and
# the table into BENCHMARKS.md. FlexAttention compiles once per worker and again (with dynamic shapes) at its second
# batch shape; the warm-up steps take both.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TQDM_DISABLE=1 PYTHONUNBUFFERED=1
python3 - <<'PY'
import importlib.metadata as m, torch
print({name: m.version(name) for name in ("torch", "transformers", "trl", "datasets", "accelerate", "pyarrow", "peft")})
print(torch.cuda.get_device_name(0))
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
config = AutoConfig.from_pretrained(".gpu-model")
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(config)
model.save_pretrained("/tmp/smollm2")
AutoTokenizer.from_pretrained(".gpu-model").save_pretrained("/tmp/smollm2")
PY
failed=()
timeout 100 python3 benchmarks/layout_exactness.py --model /tmp/smollm2 --dtype bfloat16 --rows 64 \
    --attn sdpa flex_attention --output "$out/layout-exactness-bf16-gpu.json" 2>&1 | grep -v "Loading weights" \
    || failed+=("bf16 exactness")
timeout 40 python3 benchmarks/layout_exactness.py --model /tmp/smollm2 --dtype float32 --rows 64 \
    --output "$out/layout-exactness-fp32-gpu.json" 2>&1 | grep -v "Loading weights" || failed+=("fp32 exactness")
timeout 260 python3 benchmarks/throughput.py --lengths hh --model /tmp/smollm2 --batch 64 --steps 6 --warmup 2 \
    --rounds 1 --max_length 512 --output "$out/throughput-hh-smollm2-gpu.json" 2>&1 \
    | tee "$out/throughput-hh-smollm2-gpu.md" || failed+=("throughput")
# DPOTrainer again, for the ratio in the same run
timeout 100 python3 benchmarks/throughput.py --lengths hh --model /tmp/smollm2 --batch 64 --steps 6 --warmup 2 \
    --rounds 1 --max_length 512 --trainers ULMATrainer:shared_prompt@flex_attention \
    PointwiseDPOTrainer:shared_prompt@flex_attention DPOTrainer \
    --output "$out/throughput-hh-smollm2-gpu-flex.json" 2>&1 | tee "$out/throughput-hh-smollm2-gpu-flex.md" \
    || failed+=("FlexAttention throughput")
# FlashAttention 2, where the flash-attn package is installed (it needs a CUDA build): padding_free as one varlen
# sequence, exactness and throughput beside padded sdpa (its flash kernel) and DPOTrainer; last, as it may not fit
if python3 -c "import flash_attn" 2>/dev/null; then
    timeout 40 python3 benchmarks/layout_exactness.py --model /tmp/smollm2 --dtype bfloat16 --rows 64 \
        --attn flash_attention_2 --output "$out/layout-exactness-bf16-gpu-fa2.json" 2>&1 | grep -v "Loading weights" \
        || failed+=("FlashAttention-2 exactness")
    timeout 80 python3 benchmarks/throughput.py --lengths hh --model /tmp/smollm2 --batch 64 --steps 6 --warmup 2 \
        --rounds 1 --max_length 512 --trainers ULMATrainer:padding_free@flash_attention_2 \
        ULMATrainer:padded@flash_attention_2 ULMATrainer:padded DPOTrainer \
        --output "$out/throughput-hh-smollm2-gpu-fa2.json" 2>&1 | tee "$out/throughput-hh-smollm2-gpu-fa2.md" \
        || failed+=("FlashAttention-2 throughput")
else
    echo "flash-attn is not installed: no FlashAttention-2 rows (padded sdpa runs its own flash kernel above)"
fi
if (( ${#failed[@]} )); then
    echo "FAILED or timed out: ${failed[*]}" >&2
    exit 1
fi
