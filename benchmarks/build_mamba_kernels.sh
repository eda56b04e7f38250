#!/usr/bin/env bash
# Build the fused Mamba-2 kernels (mamba-ssm, causal-conv1d) from their sdists, offline, for this
# machine's GPU alone, and install them into a folder for PYTHONPATH.
#
# Why: PyPI carries sdists only, and their setup.py compiles for about nine GPU architectures (tens
# of minutes); pinned to the GPU at hand it takes minutes. This is how the kernels were built for
# benchmarks/results/gpu_paper_shapes*.json; envs/cuda.yaml (conda-forge builds) is the way for users.
#
#   benchmarks/build_mamba_kernels.sh SDIST_DIR TARGET [WHEEL_DIR]
set -euo pipefail
src=$1 target=$2 wheels=${3:-$(mktemp -d)}
arch=$(python3 -c "import torch; major, minor = torch.cuda.get_device_capability(); print(f'{major}{minor}')")
work=$(mktemp -d)
for sdist in "$src"/mamba_ssm-*.tar.gz "$src"/causal_conv1d-*.tar.gz; do
  tar xzf "$sdist" -C "$work"
done
for setup in "$work"/*/setup.py; do
  python3 - "$setup" "$arch" <<'PY'
import sys
path, arch = sys.argv[1], sys.argv[2]
text = open(path).read()
marker = "    # HACK: The compiler flag"
if marker not in text:
    sys.exit(f"{path}: no '{marker.strip()}' line to pin the GPU architecture before (another release?)")
pin = f'    cc_flag = ["-gencode", "arch=compute_{arch},code=sm_{arch}"]  # this GPU only\n'
open(path, "w").write(text.replace(marker, pin + marker, 1))
PY
done
trap 'kill 0' TERM INT  # a stopped build (e.g. under `timeout`) takes its compilers with it: they would slow what runs next
export MAMBA_FORCE_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE MAX_JOBS=${MAX_JOBS:-16}
pids=()
for dir in "$work"/causal_conv1d-* "$work"/mamba_ssm-*; do
  [ -d "$dir" ] || continue
  python3 -m pip wheel -q --no-build-isolation --no-deps --no-index -w "$wheels" "$dir" >"$dir.log" 2>&1 &
  pids+=("$!:$dir")
done
status=0
for entry in "${pids[@]}"; do
  if ! wait "${entry%%:*}"; then
    echo "build failed: ${entry#*:} (sm_$arch); last lines of its log:" >&2
    tail -40 "${entry#*:}.log" >&2
    status=1
  fi
done
[ "$status" -eq 0 ] || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --target "$target" "$wheels"/*.whl
ls -l "$wheels"
