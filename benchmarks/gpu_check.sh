#!/usr/bin/env bash
# Issue 11's GPU check in one command, for a session that has a GPU (benchmarks/README.md, "GPU"):
#   bash benchmarks/gpu_check.sh DATA OUT [BUDGET_S]
# DATA is what `python benchmarks/bench_train_gpu.py prepare --out DATA --wheels` wrote here (carried along); OUT
# gets the logs and JSON. Steps run in priority order and a step starts only while fewer than BUDGET_S seconds
# (default 480) have passed, so the command ends inside a 600 s call: the gpu-marked tests, the cold benchmark of
# finetuner against its references, a profile of the text step, the compile and attention variants, and the
# steady-state text and ResNet runs.
set -uo pipefail
data=${1:-.bench}
out=${2:-gpu-out}
budget=${3:-480}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD/src"
if compgen -G "$data/wheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$data"/wheels/*.whl || exit 1
    export PYTHONPATH="$PWD/src:/tmp/site"
fi
bench="python3 benchmarks/bench_train_gpu.py"
left() { echo $((budget - SECONDS)); }
step() {  # step NAME SECONDS_IT_NEEDS COMMAND...: run it when that much of the budget is left
    local name=$1 need=$2
    shift 2
    if [ "$(left)" -lt "$need" ]; then
        echo "SKIPPED $name: $(left) s of the budget left, it needs about $need" | tee -a "$out/skipped.txt"
        return
    fi
    echo "== $name (at ${SECONDS} s)"
    "$@" 2>&1 | tee "$out/$name.log"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/device.txt"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' \
    | tee -a "$out/device.txt"
step gpu-tests 60 python3 -m pytest -q -p no:cacheprovider -m gpu tests
step bench-cold 200 $bench run --data "$data" --mode cold --json "$out/bench-cold.json" \
    --methods finetuner sentence-transformers raw raw+cl
step profile-text 45 $bench profile --data "$data" --workload text --out "$out/profile-text.json"
step bench-variants 200 $bench run --data "$data" --mode cold --json "$out/bench-variants.json" \
    --budget-s $(( $(left) > 60 ? $(left) - 60 : 1 )) --baseline "$out/bench-cold.json" \
    --methods finetuner+cudnn finetuner+compile
step bench-steady 90 $bench run --data "$data" --mode steady --json "$out/bench-steady.json" \
    --workloads text resnet --methods finetuner raw raw+cl
echo "done in ${SECONDS} s"
