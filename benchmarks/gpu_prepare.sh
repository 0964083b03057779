#!/usr/bin/env bash
# Prepare, on this machine, what benchmarks/gpu.sh needs on the GPU machine, which reaches no registry and has its own
# PyTorch, transformers 5.17 and huggingface-hub 1.33 but no trl or datasets:
#   .whl/        wheels of trl, transformers 5.23 (the oldest the package takes, the newest that huggingface-hub 1.33
#                satisfies), datasets and its two missing pure-Python needs, for Python 3.12 (about 16 MB)
#   .gpu-model/  SmolLM2-135M-Instruct's config, tokenizer and chat template, without the weights (the benchmark
#                builds random weights there: speed and rounding do not depend on them)
# Both are git-ignored; name them in the device call's `carry`. Needs the offline default model converted once
# (`trl-ulma ulma` does it, or trl_ulma.default_models.default_model_path()).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
rm -rf .whl .gpu-model
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    trl==1.16.0 transformers==5.23.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
model="$("$python" -c 'from trl_ulma.default_models import default_model_path; print(default_model_path())')"
mkdir -p .gpu-model
for file in config.json generation_config.json tokenizer.json tokenizer_config.json chat_template.jinja; do
    [ -f "$model/$file" ] && cp "$model/$file" .gpu-model/
done
du -sh .whl .gpu-model
