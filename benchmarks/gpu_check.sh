#!/usr/bin/env bash
# Issue 11's GPU check, for a session that has a GPU (benchmarks/README.md, "GPU"):
#   bash benchmarks/gpu_check.sh DATA OUT [BUDGET_S] [PART]
# DATA is what `python benchmarks/bench_train_gpu.py prepare --out DATA --wheels` wrote (carried along); OUT gets
# check.log and one JSON per benchmark (at most 5 files). Steps run in priority order, each only while enough of
# BUDGET_S seconds (default 480) is left, so one call ends inside the device tool's 600 s limit. PART:
#   main      (default) the gpu-marked tests, the cold benchmark of finetuner against sentence-transformers and the
#             raw loops on all four workloads, a profile of the text step, then steady-state text if time is left;
#   variants  finetuner, finetuner+cudnn and finetuner+compile in the cold mode on all four workloads;
#   steady    the steady mode (200 timed steps) of finetuner and the raw loops on text, clip and resnet.
set -uo pipefail
data=${1:-.bench}
out=${2:-gpu-out}
budget=${3:-480}
part=${4:-main}
mkdir -p "$out"
log="$out/check.log"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD/src"
if compgen -G "$data/wheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$data"/wheels/*.whl || exit 1
    export PYTHONPATH="$PWD/src:/tmp/site"
fi
bench="python3 benchmarks/bench_train_gpu.py"
smoke=${GPU_CHECK_SMOKE:+--smoke}  # GPU_CHECK_SMOKE=1: tiny models on the CPU, to try this script anywhere
left() { echo $((budget - SECONDS)); }
step() {  # step NAME SECONDS_IT_NEEDS COMMAND...: run it when that much of the budget is left
    local name=$1 need=$2
    shift 2
    if [ "$(left)" -lt "$need" ]; then
        echo "== SKIPPED $name: $(left) s of the budget left, it needs about $need" | tee -a "$log"
        return
    fi
    echo "== $name (at ${SECONDS} s)" | tee -a "$log"
    "$@" 2>&1 | tee -a "$log"
}
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
    echo "part $part, budget $budget s"
} 2>&1 | tee "$log"
case "$part" in
main)
    step gpu-tests 90 python3 -m pytest -q -p no:cacheprovider -m gpu -rs tests
    step bench-cold 240 $bench run --data "$data" --mode cold $smoke --json "$out/bench-cold.json" \
        --budget-s $(( $(left) > 90 ? $(left) - 90 : 1 )) --methods finetuner sentence-transformers raw raw+cl
    step profile-text 45 $bench profile --data "$data" $smoke --workload text --out "$out/profile-text.json"
    step steady-text 60 $bench run --data "$data" --mode steady $smoke --json "$out/bench-steady.json" \
        --workloads text --methods finetuner raw
    ;;
variants)
    step bench-variants 120 $bench run --data "$data" --mode cold $smoke --json "$out/bench-variants.json" \
        --budget-s $(( $(left) > 90 ? $(left) - 90 : 1 )) --methods finetuner finetuner+cudnn finetuner+compile
    ;;
steady)
    step bench-steady 120 $bench run --data "$data" --mode steady $smoke --json "$out/bench-steady.json" \
        --budget-s $(( $(left) > 60 ? $(left) - 60 : 1 )) --workloads text clip resnet --methods finetuner raw raw+cl
    ;;
*)
    echo "unknown part $part (main, variants, steady)" | tee -a "$log"
    exit 2
    ;;
esac
echo "done in ${SECONDS} s" | tee -a "$log"
