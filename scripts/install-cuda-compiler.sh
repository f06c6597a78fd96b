#!/usr/bin/env bash
# Installs a CUDA compiler on a Debian 12 machine without a GPU, so the native kernels can be compile-checked
# (CI and development machines). Debian's nvidia-cuda-toolkit is CUDA 11.8; its nvcc needs clang-14 as host
# compiler (gcc 12 is too new for it). The GPU machine has its own CUDA 13 and never runs this.
set -euo pipefail
if command -v nvcc >/dev/null 2>&1; then
  exit 0
fi
sources=/etc/apt/sources.list.d/debian.sources
if [ -f "$sources" ] && ! grep -q 'non-free' "$sources"; then
  sed -i 's/^Components: main$/Components: main contrib non-free/' "$sources"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends nvidia-cuda-toolkit clang-14 >/dev/null
nvcc --version | tail -1
