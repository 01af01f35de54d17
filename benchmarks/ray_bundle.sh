#!/usr/bin/env bash
# Ray for a bare GPU node (no network, no Ray): pack the installed `ray` (without its jars,
# RLlib, Serve and the LLM library) and the packages Ray Tune needs that a torch image lacks
# into DIR/ray-bundle-<ray>-<python>-<platform>.tar.xz, at most 60 MB
# (benchmarks/ray_bundle.py). Build it where Ray is installed, with the node's Python version;
# carry it with the checkout; on the node, benchmarks/ray_launch.sh installs and runs it:
#
#   benchmarks/ray_bundle.sh DIR                  # ~2 minutes (xz)
#   benchmarks/ray_bundle.sh DIR --with pandas    # the node has no pandas: bundle it too
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
dir=${1:?usage: ray_bundle.sh DIR [--with NAME]...}
shift
exec python3 -m benchmarks.ray_bundle build "$dir" "$@"
