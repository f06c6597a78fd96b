#!/usr/bin/env bash
# Builds the CUDA backend's native library, native/build/libroutereplay_cuda.so, with nvcc (and the kernel tests
# with --tests). The .NET host finds it there, next to the routereplay binary, or at $ROUTEREPLAY_CUDA_LIBRARY.
#
#   native/build.sh                 sm_80 and sm_90 machine code plus compute_90 PTX (newer GPUs JIT the PTX)
#   native/build.sh --arch 90       one architecture only (faster to build)
#   native/build.sh --tests         also build native/build/kernel_tests
#   native/build.sh --bench         also build native/build/kernel_bench (every hot kernel at real shapes)
#   native/build.sh --check         compile every source without linking: a compile check for machines that have
#                                   nvcc but no GPU (CI installs CUDA 11.8 through scripts/install-cuda-compiler.sh)
#
# Needs nvcc 11.8 or newer and cuBLAS. nvcc 11.x does not accept gcc 12 or newer as host compiler; clang-14 is used
# then when present.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${ROUTEREPLAY_NATIVE_BUILD:-$here/build}
archs="80 90"
tests=0
bench=0
check=0
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) archs=${2//,/ }; shift 2 ;;
    --tests) tests=1; shift ;;
    --bench) bench=1; shift ;;
    --check) check=1; shift ;;
    *) echo "native/build.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

command -v nvcc >/dev/null || { echo "native/build.sh: nvcc not found (install the CUDA toolkit, or run scripts/install-cuda-compiler.sh)" >&2; exit 1; }
version=$(nvcc --version | sed -n 's/.*release \([0-9]*\)\.\([0-9]*\).*/\1/p')
host=()
if [ "${version:-0}" -lt 12 ] && command -v clang++-14 >/dev/null; then
  host=(-ccbin clang++-14)
fi
gencode=()
last=""
for a in $archs; do
  gencode+=(-gencode "arch=compute_$a,code=sm_$a")
  last=$a
done
gencode+=(-gencode "arch=compute_$last,code=compute_$last")

flags=(-O3 -std=c++17 -lineinfo -I"$here/include" "${host[@]}" "${gencode[@]}" -Xcompiler -fPIC,-fvisibility=hidden)
mkdir -p "$out/obj"
sources=("$here"/src/*.cu)
pids=()
for src in "${sources[@]}"; do
  obj="$out/obj/$(basename "${src%.cu}").o"
  nvcc "${flags[@]}" -c "$src" -o "$obj" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
[ $status -eq 0 ] || { echo "native/build.sh: compilation failed" >&2; exit 1; }

tests_sources=("$here"/tests/*.cu)
if [ $check -eq 1 ]; then
  pids=()
  for src in "${tests_sources[@]}" "$here/bench/kernel_bench.cu"; do
    nvcc "${flags[@]}" -c "$src" -I"$here/src" -o "$out/obj/test_$(basename "${src%.cu}").o" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
  [ $status -eq 0 ] || { echo "native/build.sh: compiling the kernel tests or the kernel benchmark failed" >&2; exit 1; }
  echo "native/build.sh: compiled ${#sources[@]} sources, the kernel tests and the kernel benchmark (nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), archs: $archs)"
  exit 0
fi

objects=()
for src in "${sources[@]}"; do objects+=("$out/obj/$(basename "${src%.cu}").o"); done
nvcc "${gencode[@]}" "${host[@]}" -shared -o "$out/libroutereplay_cuda.so" "${objects[@]}" -lcublas
if [ $tests -eq 1 ]; then
  nvcc "${flags[@]}" -I"$here/src" -o "$out/kernel_tests" "${tests_sources[@]}" "${objects[@]}" -lcublas
fi
if [ $bench -eq 1 ]; then
  nvcc "${flags[@]}" -I"$here/src" -o "$out/kernel_bench" "$here/bench/kernel_bench.cu" "${objects[@]}" -lcublas
fi
echo "native/build.sh: built $out/libroutereplay_cuda.so (archs: $archs)"
