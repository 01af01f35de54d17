#!/usr/bin/env bash
# What one short GPU lease runs (under 10 minutes on an H200: the parts' limits add up to
# 540 s, with ~20 s to install the Ray bundle), in order of value, each part under its own
# time limit so that a hang costs only that part; every part's output is kept in OUT for
# BENCHMARKS.md. Needs only the checkout and torch, torchvision, pyyaml, rich (no network;
# Ray from this Python or the Ray bundle):
#
#   benchmarks/gpu_session.sh OUT [SAMPLE] [--cpu]  # SAMPLE: cifar-10-batches-py's folder (learn)
#                                                   # --cpu: the same, tiny, on a CPU (a dry run)
#   PARTS="table gpu_check" benchmarks/gpu_session.sh OUT   # only these parts
#   RAY_BUNDLE=DIR/ray-bundle-2.60.0-cp312-linux_x86_64.tar.xz benchmarks/gpu_session.sh OUT
#
# Where this Python has no Ray, the Ray bundle (benchmarks/ray_bundle.sh: RAY_BUNDLE, else the
# one for this Python in the checkout's bundles/ folder) is installed offline into OUT/ray
# and put on PYTHONPATH, so that the real `grid launch`es below run; without Ray or a bundle
# the table part fails and gpu_check skips its launch.
#
# Default parts, in order (PARTS picks others):
# 1. table: the All-CNN table's throughput, launched (benchmarks/gpu_table.py): real
#    `grid launch`es of allcnn_table's 12 architectures, 2 epochs on 50,000 images, at 8, 4,
#    2 and 1 trials per GPU with the captured step, then eager at the best, as its budget
#    holds; cells/hour, img/s per GPU, the fraction of the chip's peak, the full table
#    extrapolated, and `grid plan --estimate` beside them;
# 2. reuse: a slot's captured step kept across cells (benchmarks/gpu_reuse.py): a second
#    cell of All-CNN-C in one process compiles nothing and trains as in a fresh process;
# 3. gpu_check: every model in every mode, losses checked, and a 4-cell launch at gpu: 0.5
#    (benchmarks/gpu_check.py), as far as its budget of 45 s goes.
# Not by default (PARTS="bench epoch learn"; measured in the first H200 session):
# 4. bench: grid bench, ours vs the seeds' pipeline at width 1 and 0.25, 4 cells packed vs
#    one after another; then ours with the captured step (train.compile) at width 1;
# 5. epoch: one All-CNN-C cell of grids/allcnn_table.yaml, 3 epochs on 50,000 synthetic
#    images written as CIFAR-10 files, as the spec says (bf16 on CUDA), in fp32, and captured;
# 6. learn: a learning check on real images (SAMPLE): ResNet 9 with batch norm, 40 epochs.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cpu=0 args=()
for a in "$@"; do if [[ $a == --cpu ]]; then cpu=1; else args+=("$a"); fi; done
out=${args[0]:?usage: gpu_session.sh OUT [SAMPLE] [--cpu]}
sample=${args[1]:-}
mkdir -p "$out"
if ((cpu)); then
    device=cpu check=(--device cpu --models strided_a,resnet9 --budget-s 30) table=(--cpu)
    reuse=(--device cpu --model strided_a --width 0.125 --images 512 --timeout-s 40)
    bench=(--device cpu --batch 16 --steps 2 --warmup 3 --repeats 1 --min-time 0)
    widths=0.125 pack=2 images=6000 width=0.125 epochs=2
else
    device=cuda check=(--budget-s 45) table=(--budget-s 300) reuse=(--device cuda --timeout-s 40)
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

# On a CPU the dry run leaves gpu_check out (its own CPU run is `gpu_check.sh --device cpu`),
# to stay under 3 minutes.
default_parts="table reuse gpu_check"
((cpu)) && default_parts="table reuse"
want() { [[ " ${PARTS:-$default_parts} " == *" $1 "* ]]; }

# the checkout's bundle for this Python and platform (bundles/ may hold several)
here=$(python3 -c "from benchmarks.ray_bundle import target; print(target())")
bundle=${RAY_BUNDLE:-$(ls bundles/ray-bundle-*-"$here".tar.xz 2>/dev/null | head -n 1)}
if ! python3 -c "import ray" 2>/dev/null && [[ -n $bundle ]]; then
    site=$(python3 -m benchmarks.ray_bundle install "$bundle" "$out/ray") || exit 2
    export PYTHONPATH="$site:$PYTHONPATH"
    echo "== Ray from $bundle, installed in $site"
fi

{ date -u; nvidia-smi 2>&1 | head -15; } >"$out/machine.txt"
cat "$out/machine.txt"
want table && part table 420 python3 -m benchmarks.gpu_table "$out/table" "${table[@]}"
want reuse && part reuse 60 python3 -m benchmarks.gpu_reuse "${reuse[@]}" --json "$out/reuse.json"
want gpu_check && part gpu_check 60 python3 -m benchmarks.gpu_check "${check[@]}" --json "$out/gpu_check.json"
want bench && part bench 50 python3 -m orchestrator.cli bench "${bench[@]}" --width $widths --pack $pack --json
want bench && part bench_compiled 40 python3 -m orchestrator.cli bench "${bench[@]}" --width $width --pack 0 \
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
