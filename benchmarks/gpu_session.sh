#!/usr/bin/env bash
# What one short GPU lease runs (about 6 minutes on an H200; the parts' limits add up to 560 s), in order of value, each part
# under its own time limit so that a hang costs only that part; every part's output is kept
# in OUT for BENCHMARKS.md. Needs only the checkout and torch, torchvision, pyyaml, rich
# (no Ray, no boto3, no network):
#
#   benchmarks/gpu_session.sh OUT [SAMPLE]        # SAMPLE: a folder holding cifar-10-batches-py
#   benchmarks/gpu_session.sh OUT [SAMPLE] --cpu  # the same, tiny, on a CPU (a dry run)
#   PARTS="gpu_check epoch" benchmarks/gpu_session.sh OUT   # only these parts
#   RAY_BUNDLE=DIR/ray-bundle-2.60.0-cp312-linux_x86_64.tar.xz benchmarks/gpu_session.sh OUT
#
# Where this Python has no Ray, the Ray bundle (benchmarks/ray_bundle.sh: RAY_BUNDLE, else the
# one in the checkout's bundles/ folder) is installed offline into OUT/ray and put on
# PYTHONPATH, so that gpu_check's real `grid launch` (4 cells, gpu: 0.5) runs; without Ray
# or a bundle that launch is skipped, as before.
#
# 1. gpu_check: every model in every mode, losses checked (benchmarks/gpu_check.py);
# 2. grid bench: ours vs the seeds' pipeline at width 1 and 0.25, 4 cells packed vs one after
#    another; then ours with the captured step (train.compile) at width 1;
# 3. one All-CNN-C cell of grids/allcnn_table.yaml, 3 epochs on 50,000 synthetic images
#    written as CIFAR-10 files, three times: as the spec says (precision auto: bf16 on CUDA),
#    in fp32, and with the captured step (train.compile): the real per-epoch time, evaluation
#    included, of the paper's setting in each;
# 4. a learning check on real images (SAMPLE): ResNet 9 with batch norm, 40 epochs.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out=${1:?usage: gpu_session.sh OUT [SAMPLE] [--cpu]}
sample=${2:-}
mkdir -p "$out"
if [[ ${3:-} == --cpu ]]; then
    device=cpu check=(--device cpu --models strided_a,resnet9 --budget-s 30)
    bench=(--device cpu --batch 16 --steps 2 --warmup 3 --repeats 1 --min-time 0)
    widths=0.125 pack=2 images=6000 width=0.125 epochs=2
else
    device=cuda check=(--budget-s 330)
    bench=(--device cuda --batch 128 --min-time 3 --repeats 3)
    widths=1.0,0.25 pack=4 images=50000 width=1.0 epochs=40
fi

part() {  # part NAME LIMIT_S COMMAND...: run it under `timeout`, keep its output in OUT/NAME.log
    local name=$1 limit=$2 t0=$SECONDS
    shift 2
    echo "== $name (limit ${limit}s): $*"
    timeout -k 10 "$limit" "$@" >"$out/$name.log" 2>&1
    echo "== $name: exit $? after $((SECONDS - t0))s"
    tail -n 25 "$out/$name.log"
}

want() { [[ " ${PARTS:-gpu_check bench epoch learn} " == *" $1 "* ]]; }

bundle=${RAY_BUNDLE:-$(ls bundles/ray-bundle-*.tar.xz 2>/dev/null | head -n 1)}
if ! python3 -c "import ray" 2>/dev/null && [[ -n $bundle ]]; then
    site=$(python3 -m benchmarks.ray_bundle install "$bundle" "$out/ray") || exit 2
    export PYTHONPATH="$site:$PYTHONPATH"
    echo "== Ray from $bundle, installed in $site"
fi

{ date -u; nvidia-smi 2>&1 | head -15; } >"$out/machine.txt"
cat "$out/machine.txt"
want gpu_check && part gpu_check 260 python3 -m benchmarks.gpu_check "${check[@]}" --json "$out/gpu_check.json"
want bench && part bench 70 python3 -m orchestrator.cli bench "${bench[@]}" --width $widths --pack $pack --json
want bench && part bench_compiled 50 python3 -m orchestrator.cli bench "${bench[@]}" --width $width --pack 0 \
    --compile --json

if want epoch; then
    files=$(mktemp -d)
    python3 -c "import sys; from trainers.cifar_files import write_cifar10
from trainers.data import make_synthetic
x, y, tx, ty, _ = make_synthetic($images, 10000); write_cifar10(sys.argv[1], x, y, tx, ty)" "$files"
    cell=(grids/allcnn_table.yaml --set 'arch=[allcnn_c]' --set 'lr=[0.01]' --set train.epochs=3
        --set "dataset.root=$files" --set train.device=$device --set model.width=$width)
    part epoch 45 python3 -m orchestrator.cli train "${cell[@]}"  # precision auto: bf16 on CUDA
    part epoch_fp32 45 python3 -m orchestrator.cli train "${cell[@]}" --set train.precision=fp32
    part epoch_compiled 60 python3 -m orchestrator.cli train "${cell[@]}" --set train.compile=true
    rm -rf "$files"
fi

if [[ -n $sample ]] && want learn; then
    part learn 30 python3 -m orchestrator.cli train grids/quickstart.yaml --set 'arch=[resnet9]' \
        --set 'batch_norm=[true]' --set 'lr=[0.05]' --set dataset.name=cifar10 \
        --set "dataset.root=$sample" --set dataset.subset=null --set dataset.val_size=100 \
        --set model.width=$width --set train.epochs=$epochs --set train.device=$device
fi
echo "== gpu_session: done, outputs in $out"
