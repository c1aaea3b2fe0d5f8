#!/usr/bin/env bash
# The GPU checks of the training and scoring speed, in two parts, each one device run of about 7
# minutes on one H100/H200 (measured on an H200: part 1 about 450 s, part 2 about 400 s), run from
# the repository root with pytorch-fid importable:
#
#     PYTHONPATH=. bash benchmarks/gpu_check.sh 1          # a b c e
#     PYTHONPATH=. bash benchmarks/gpu_check.sh 2          # d f g h
#     PYTHONPATH=. bash benchmarks/gpu_check.sh --cpu 1    # anywhere: the same steps at CPU sizes
#                                                          # (the GPU tests then skip)
#
# Part 1, in priority order:
#   a gpu-tests     pytest -m gpu: graphed vs eager steps, the trainer and a trial on CUDA, scoring
#   b train-step    eager vs graphed ms/step, CIFAR-10 f=32/64/128 and CelebA f=32/128
#   c trials        the paper trial (CIFAR-10 shape, f=128, 100 epochs, 10,000 samples a set) and a
#                   32-filter one, end to end on photograph patches: phases (<= 120 s, <= 45 s)
#   e scoring       fp32 scoring: images/s, 50,000 images (<= 15 s); TF32 and other variants
# Part 2:
#   d throughput    the fast loop vs the plain loop at 32 and 128 filters (>= 3x, >= 1.5x), and
#                   torch.compile inside the graph at 128: its compile time against what it saves
#   f agreement     3 seeds x {graph, eager} short 32-filter trials: the scores' spreads
#   g packing       1, 2, 4 concurrent 32- and 64-filter trials on the card
#   h table1-cost   the GPU-hours of Table 1 on this card (<= 30)
# No datasets and no FID weights are needed: the trials write photograph patches in the CIFAR-10
# file format and score with a random-weight FID Inception (same cost; the values are not FID).
# Each step runs under its own time limit (together under 10 minutes a part), so that one hang
# cannot eat the run. Its output is printed and kept in $OUT/<step>.log ($OUT, or a new temporary
# folder), with the summary table in $OUT/summary-<part>.log; were there more than 8 files under
# $OUT, they are packed into $OUT/gpu-check-<part>.tar.gz. The exit status is that of the first
# step that failed, or 0.
set -uo pipefail

size=paper
trial_filters=(128 32)
slower=1  # the time limits are for a GPU machine; a CPU needs longer for its small sizes
if [[ "${1:-}" == "--cpu" ]]; then
    size=cpu
    trial_filters=(8 4)  # the digits trials of --size cpu: 128 filters would take an hour there
    slower=5
    shift
fi
part=${1:-}
if [[ "$part" != 1 && "$part" != 2 ]]; then
    echo "usage: bash benchmarks/gpu_check.sh [--cpu] 1|2" >&2
    exit 2
fi
out=${OUT:-$(mktemp -d)}
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1  # a step stopped at its time limit still leaves what it printed
status=0
summary=()

step() {  # step LETTER NAME SECONDS COMMAND...: run it under a time limit, print and log it
    local letter=$1 name=$2 limit=$(($3 * slower))
    shift 3
    echo "=== $letter $name (limit ${limit} s): $*"
    local start=$SECONDS
    timeout --kill-after=15 "$limit" "$@" 2>&1 | tee "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    local took=$((SECONDS - start))
    local verdict=ok
    if [[ $rc == 124 || $rc == 137 ]]; then
        verdict="TIMED OUT"
    elif [[ $rc != 0 ]]; then
        verdict="FAILED ($rc)"
    fi
    echo "=== $letter $name: $verdict after $took s"
    local row='| %s | %-13s | %-10s | %5d | %5d |'
    summary+=("$(printf "$row" "$letter" "$name" "$verdict" "$took" "$limit")")
    if [[ $rc != 0 && $status == 0 ]]; then
        status=$rc
    fi
}

findings() {  # what a step's log says about the targets: its tables, verdicts and test counts
    grep -E "^(## |\||Target|Same value|torch.compile|Recommended|For study|pytorch-fid's)|\
^[0-9]+ (passed|failed|skipped)|^(FAILED|ERROR) |Error" "$out/$1.log" 2>/dev/null | tail -32
}

step - "environment-$part" 15 "$python" -c '
import os, platform, torch, scipy, sklearn
print("torch", torch.__version__, "CUDA", torch.version.cuda,
      "cuDNN", torch.backends.cudnn.version())
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU only)")
print("host", platform.node(), os.cpu_count(), "CPU cores")
import pytorch_fid
print("pytorch-fid", pytorch_fid.__version__, "scipy", scipy.__version__,
      "sklearn", sklearn.__version__)
'
if [[ $status != 0 ]]; then
    echo "environment check failed: is pytorch-fid on PYTHONPATH?" >&2
    exit $status
fi

if [[ $part == 1 ]]; then
    names=(gpu-tests train-step trials scoring)
    step a gpu-tests 90 "$python" -m pytest -m gpu tests/test_gpu.py -p no:cacheprovider -rs
    step b train-step 60 "$python" -m benchmarks.train_step --size "$size"
    step c trials 330 "$python" -m benchmarks.trial_phases --size "$size" \
        --filters "${trial_filters[@]}"
    step e scoring 90 "$python" -m benchmarks.scoring --size "$size"
else
    names=(throughput agreement packing table1-cost)
    step d throughput 150 "$python" -m benchmarks.throughput --size "$size" --compile
    step f agreement 120 "$python" -m benchmarks.graph_agreement --size "$size"
    step g packing 130 "$python" -m benchmarks.packing --size "$size"
    step h table1-cost 170 "$python" -m benchmarks.table1_cost --size "$size"
fi

{
    for name in "${names[@]}"; do
        echo
        echo "$name:"
        findings "$name" | sed 's/^/  /'
    done
    echo
    echo "## GPU check, part $part ($size sizes): $(date -u +%FT%TZ)"
    echo
    echo "| # | step          | result     |     s | limit |"
    echo "|---|---------------|------------|-------|-------|"
    printf '%s\n' "${summary[@]}"
    echo
    echo "logs: $out; exit status $status"
} | tee "$out/summary-$part.log"
if (($(find "$out" -type f | wc -l) > 8)); then  # the most files a device run hands back
    tar -czf "$out/gpu-check-$part.tar.gz" -C "$out" --exclude='*.tar.gz' .
    find "$out" -type f ! -name '*.tar.gz' ! -name "summary-$part.log" -delete
fi
exit $status
