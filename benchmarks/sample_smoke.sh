#!/usr/bin/env bash
# Every shipped grid, by hand, on real CIFAR-10 images: `grid plan`, then `grid train --smoke`
# (its first --smoke cell: 1 epoch, 512 training images, a quarter of the width) on a folder
# that holds `cifar-10-batches-py` (a few hundred real images are enough).
#
#   bash benchmarks/sample_smoke.sh DATA_ROOT [GRID.yaml ...]     (default: grids/*.yaml)
#
# Prints one line per grid: plan's exit status, train's, the wall time and train's last line.
# A grid on CIFAR-100 (the transfer stages) needs `cifar-100-python` there too; without it its
# train exits 2 with a one-line error naming the folder, as for any user. Not a test: the
# suite must not depend on real images (tests/orchestrator/test_grid_smoke.py writes its own).
set -u
root=${1:?usage: sample_smoke.sh DATA_ROOT [GRID.yaml ...]}
shift
grids=("$@")
[ ${#grids[@]} -eq 0 ] && grids=(grids/*.yaml)
sets=(--set "dataset.root=$root" --set dataset.download=false --set train.device=cpu)
printf '%-34s %4s %5s %7s  %s\n' grid plan train wall_s "train's last line"
for g in "${grids[@]}"; do
    grid plan "$g" "${sets[@]}" >/dev/null 2>&1
    plan=$?
    start=$(date +%s.%N)
    out=$(grid train "$g" --smoke "${sets[@]}" 2>&1)
    train=$?
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    printf '%-34s %4s %5s %7.1f  %s\n' "$(basename "$g")" "$plan" "$train" "$wall" \
        "$(echo "$out" | tail -1 | cut -c1-110)"
done
