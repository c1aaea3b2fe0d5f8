#!/usr/bin/env bash
# Every GPU check in one run (about 6 minutes, at most 9.5, on one H100/H200), from the repo root:
#
#     PYTHONPATH=. bash benchmarks/gpu_check.sh          # on the GPU machine
#     PYTHONPATH=. bash benchmarks/gpu_check.sh --cpu    # anywhere: the same steps at CPU sizes
#                                                        # (the GPU tests then skip)
#
# 1. pytest -m gpu tests/test_gpu.py: graphed vs eager step, bf16, GMM on CUDA, scoring on CUDA
# 2. benchmarks.train_step: eager vs graphed ms/step, CIFAR-10 f=32/64/128, CelebA f=32/128
# 3. benchmarks.table1_cost: the GPU-hours of Table 1 on this card
# Each step's output is printed and kept in $OUT/<step>.log ($OUT, or a new temporary folder).
# pytorch-fid must be importable (trainables/metrics.py builds the FID Inception from it).
# The exit status is that of the first step that failed, or 0.
set -uo pipefail

size=paper
if [[ "${1:-}" == "--cpu" ]]; then
    size=cpu
fi
out=${OUT:-$(mktemp -d)}
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1  # a step stopped at its time limit still leaves what it printed
status=0

step() {  # step NAME SECONDS COMMAND...: run it under a time limit, print and log its output
    local name=$1 limit=$2
    shift 2
    echo "=== $name: $*"
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $((SECONDS - start)) s (124: over its ${limit} s)"
    if [[ $rc != 0 && $status == 0 ]]; then
        status=$rc
    fi
}

step environment 30 "$python" -c '
import torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version())
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU only)")
import pytorch_fid, scipy, sklearn
print("pytorch-fid", pytorch_fid.__version__, "scipy", scipy.__version__, "sklearn", sklearn.__version__)
'
step gpu-tests 120 "$python" -m pytest -m gpu tests/test_gpu.py -p no:cacheprovider -v -rs
step train-step 120 "$python" -m benchmarks.train_step --size "$size"
step table1-cost 300 "$python" -m benchmarks.table1_cost --size "$size"
echo "logs in $out"
exit $status
