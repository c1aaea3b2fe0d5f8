#!/usr/bin/env bash
# The GPU check: the run of record of this code on one H100/H200, in two parts of at most 330 s
# each (the sum of a part's time limits), so that both run in one device session of 15 minutes
# with the machine's start. From the repository root, with pytorch-fid importable
# (docs/performance.md#the-gpu-check gives the device commands and what each part should take):
#
#     PYTHONPATH=. bash benchmarks/gpu_check.sh 1          # the run of record
#     PYTHONPATH=. bash benchmarks/gpu_check.sh 2          # agreement, speed-ups, what could pay
#     PYTHONPATH=. bash benchmarks/gpu_check.sh --cpu 1    # anywhere: the same steps at CPU sizes
#                                                          # (the GPU tests then skip)
#
# Part 1, in priority order:
#   environment  the card, its driver, torch, CUDA, cuDNN, the date
#   gpu-tests    pytest -m gpu
#   trials       the paper trial (CIFAR-10 shape, f=128, 10,000 samples a set) and a 32-filter one,
#                end to end, their train phase timed for TRIAL_EPOCHS epochs and scaled to 100 for
#                the targets (<= 120 s, <= 45 s)
#   table1-cost  the GPU-hours of Table 1 on this card (<= 30), each model's step in ms and TFLOP/s
#                and its share of the card's dense peak (the 128-filter steps >= 40%)
# Part 2:
#   environment  again: a part may run on another machine
#   agreement    3 seeds x {graph, eager} short 32-filter trials: the scores' spreads
#   scoring      fp32 scoring against pytorch-fid's path, and the variants left out
#   throughput   the fast loop vs the plain loop at 32 and 128 filters (>= 3x, >= 1.5x)
#   compile      torch.compile inside the graph: the saving per step and the compile time, first
#                and cached, CIFAR-10 f=128/256 and CelebA f=64/128; entries for COMPILE_COSTS
#   streams      1, 2, 4 trials in one process, each graph on its own CUDA stream: 32 and 64
#                filters, CIFAR-10 and CelebA
# No datasets and no FID weights are needed: the trials write photograph patches in the CIFAR-10
# file format and score with a random-weight FID Inception (same cost; the values are not FID).
# Each step runs under its own time limit, so that one slow step cannot eat the run; its output is
# printed and kept in $OUT/<step>.log ($OUT, or a new temporary folder), the summary in
# $OUT/summary-<part>.log (at most 8 files: what a device run hands back). The exit status is that
# of the first step that failed, or 0.
set -uo pipefail

size=paper
trial_args=(--filters 128 32 --epochs 10)
slower=1  # the time limits are for a GPU machine; a CPU needs longer for its small sizes
if [[ "${1:-}" == "--cpu" ]]; then
    size=cpu
    trial_args=(--filters 8 4 --epochs 2)  # digits trials: 128 filters would take an hour here
    slower=10
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
names=()

step() {  # step NAME SECONDS COMMAND...: run it under a time limit, print and log it
    local name=$1 limit=$(($2 * slower))
    shift 2
    names+=("$name")
    echo "=== $name (limit ${limit} s): $*"
    local start=$SECONDS
    timeout --kill-after=5 "$limit" "$@" 2>&1 | tee "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    local took=$((SECONDS - start))
    local verdict=ok
    if [[ $rc == 124 || $rc == 137 ]]; then
        verdict="TIMED OUT"
    elif [[ $rc != 0 ]]; then
        verdict="FAILED ($rc)"
    fi
    echo "=== $name: $verdict after $took s"
    summary+=("$(printf '| %-12s | %-10s | %5d | %5d |' "$name" "$verdict" "$took" "$limit")")
    if [[ $rc != 0 && $status == 0 ]]; then
        status=$rc
    fi
}

findings() {  # what a step's log says: its tables, targets, verdicts, test counts and entries
    if [[ $1 == environment ]]; then
        cat "$out/$1.log"
        return
    fi
    grep -E "^(## |\||Target|Same value|Streams in one process|Starting the compiler|For study|\
MEASURED =|    CompileCost\(|pytorch-fid's)|^[0-9]+ (passed|failed|skipped)|^(FAILED|ERROR) |\
Error" "$out/$1.log" 2>/dev/null | tail -60
}

step environment 10 "$python" -c '
import datetime, os, platform, subprocess, torch, scipy, sklearn, pytorch_fid

def run(*command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""

print("date:", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
print("card:", run("nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                   "--format=csv,noheader") or "none (no nvidia-smi)")
print("torch:", torch.__version__, "CUDA", torch.version.cuda, "cuDNN",
      torch.backends.cudnn.version(), "device",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU only)")
print("python:", platform.python_version(), "pytorch-fid", pytorch_fid.__version__, "scipy",
      scipy.__version__, "scikit-learn", sklearn.__version__)
print("host:", platform.node(), os.cpu_count(), "CPU cores")
print("commit:", run("git", "rev-parse", "--short", "HEAD") or "unknown (no git)")
'
if [[ $status != 0 ]]; then
    echo "environment check failed: is pytorch-fid on PYTHONPATH?" >&2
    exit $status
fi

if [[ $part == 1 ]]; then
    step gpu-tests 65 "$python" -m pytest -m gpu tests/test_gpu.py -p no:cacheprovider -rs
    step trials 150 "$python" -m benchmarks.trial_phases --size "$size" "${trial_args[@]}"
    step table1-cost 105 "$python" -m benchmarks.table1_cost --size "$size"
else
    step agreement 65 "$python" -m benchmarks.graph_agreement --size "$size"
    step scoring 40 "$python" -m benchmarks.scoring --size "$size" --sets 2
    step throughput 40 "$python" -m benchmarks.throughput --size "$size"
    step compile 140 "$python" -m benchmarks.compile_cost --size "$size"
    step streams 35 "$python" -m benchmarks.streams --size "$size"
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
    echo "| step         | result     |     s | limit |"
    echo "|--------------|------------|-------|-------|"
    printf '%s\n' "${summary[@]}"
    echo
    echo "logs: $out; exit status $status"
} | tee "$out/summary-$part.log"
exit $status
