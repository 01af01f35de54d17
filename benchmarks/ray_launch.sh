#!/usr/bin/env bash
# Run `grid` on a node without Ray: install BUNDLE (benchmarks/ray_bundle.sh) offline into
# FOLDER (once; again only for another bundle), then run `grid ARGS...` with FOLDER's
# packages first on PYTHONPATH (Ray's workers inherit it). The launch starts Ray without its
# dashboard (the bundle has none of its packages) and says so.
#
#   benchmarks/ray_launch.sh BUNDLE FOLDER launch grids/allcnn_table.yaml --yes
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m benchmarks.ray_bundle run "$@"
