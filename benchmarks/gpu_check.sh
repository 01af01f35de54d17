#!/usr/bin/env bash
# The GPU acceptance run (benchmarks/gpu_check.py): every model in every mode for a few steps,
# losses checked, img/s printed with the device, driver and versions; then, where Ray is
# installed, a real 4-cell `grid launch` with resources.gpu: 0.5. Needs only the checkout and
# torch, torchvision, pyyaml, rich (no Ray, no boto3, no network). Run it first on any GPU:
#
#   benchmarks/gpu_check.sh                    # one GPU: at most ~8 minutes
#   benchmarks/gpu_check.sh --device cpu       # on a CPU: under 3 minutes
#   benchmarks/gpu_check.sh --json out.json    # also keep the results (for BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m benchmarks.gpu_check "$@"
