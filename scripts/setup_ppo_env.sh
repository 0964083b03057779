#!/usr/bin/env bash
# The separate environment for the PPO RLHF baseline: TRL 1.13 removed PPOTrainer (huggingface/trl#7020) and
# trl-ulma needs TRL 1.16, so PPO runs in its own virtual environment with TRL 1.12, the last release with
# `trl.experimental.ppo`. trl_ulma/ppo_runner.py runs in it (`train_rlhf(..., algorithm="ppo")` calls it).
#
#   bash scripts/setup_ppo_env.sh [VENV_DIR]      # default: .venv-ppo at the repository root
#   export TRL_ULMA_PPO_PYTHON=<the python it prints>
#
# torch, transformers, accelerate and datasets are the versions trl-ulma is tested with, so both environments read
# and write the same model and tokenizer files. PPO_BASE_PYTHON: the interpreter that creates it (python3).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/.venv-ppo}"

"${PPO_BASE_PYTHON:-python3}" -m venv "$venv"
"$venv/bin/pip" install -q torch==2.13.0 >&2
"$venv/bin/pip" install -q trl==1.12.0 transformers==5.23.0 accelerate==1.15.0 datasets==5.2.0 >&2
TRL_EXPERIMENTAL_SILENCE=1 "$venv/bin/python" -c \
    "import trl, trl.experimental.ppo; print('PPO environment ready: trl', trl.__version__)" >&2

python="$(cd "$venv/bin" && pwd)/python"
echo "Set it with: export TRL_ULMA_PPO_PYTHON=$python" >&2
echo "$python"
