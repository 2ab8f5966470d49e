#!/usr/bin/env bash
# Download, on a machine with network, the wheels that bench/gpu_check.sh installs on the
# GPU machine, which has no network: CPython 3.12, manylinux x86_64. That machine brings
# torch, cupy, numpy, scikit-build-core, pybind11, CMake, ninja and nvcc; the rest of what
# pymdbn needs to build, import, pass its tests and run bench/bench_gpu.py comes from here.
#
#   bash bench/gpu_wheels.sh [DIR] [all|core|min]   # default: ./wheels, all
#   bash bench/gpu_wheels.sh .whl min               # what the lent H100/H200 lacks
#
# 'all' (99 MB, 29 wheels, measured 2026-12-06) holds every group below; 'core' (build,
# run and test: 69 MB, 54 MB with DROP_NUMPY=1) is enough for the CUDA tests and the
# benchmark. 'min' is what the workplace's GPU image lacks (its package list,
# .library/device/KINDS.md, has scipy, scikit-learn, threadpoolctl, pytest, pillow,
# matplotlib, CuPy and nvidia-cublas): scipy-openblas32, pydicom and nibabel, without
# their dependencies, small enough for the device tool's 64 MiB carry.
# Then carry DIR to the GPU machine as shared/wheels or ./wheels (or point $WHEELS at it).
# The groups (see the comment at the top of bench/gpu_check.sh):
#   build    scipy-openblas32 (not on the GPU machine: the BLAS pymdbn builds and runs on);
#            scikit-build-core, pybind11 only in case the machine's are missing or too old
#   run      scipy, scikit-learn (+ joblib, cloudpickle, narwhals), threadpoolctl: imported
#            by pymdbn, the phantoms, the demo's split and the benchmarks
#   test     pytest (+ iniconfig, pluggy, pygments, packaging)
#   full     pillow, matplotlib (+ contourpy, cycler, fonttools, kiwisolver, pyparsing,
#            python-dateutil, tzdata), pydicom, nibabel (+ typing-extensions): the rest of
#            the dependencies and the [test] extra, for the whole test suite
# Dependencies are resolved by pip for the target, so numpy is downloaded too: on the GPU
# machine it is installed only if its own numpy does not satisfy a requirement.
set -euo pipefail

DIR=${1:-wheels}
SET=${2:-all}
PYVER=${GPU_PYTHON_VERSION:-3.12}
ABI=cp${PYVER/./}

BUILD=("scipy-openblas32>=0.3.27" "scikit-build-core>=0.10" "pybind11>=2.12")
RUN=("scipy>=1.10" "scikit-learn>=1.6" "threadpoolctl>=3")
TEST=("pytest>=7")
FULL=("pillow>=9" "matplotlib>=3.7" "pydicom>=2.4" "nibabel>=5")

case "$SET" in
    all) WANT=("${BUILD[@]}" "${RUN[@]}" "${TEST[@]}" "${FULL[@]}") ;;
    core) WANT=("${BUILD[@]}" "${RUN[@]}" "${TEST[@]}") ;;
    min) WANT=("scipy-openblas32>=0.3.27" "pydicom>=2.4" "nibabel>=5") ;;
    *) echo "usage: $0 [DIR] [all|core|min]" >&2; exit 2 ;;
esac
NODEPS=()
[[ "$SET" == min ]] && NODEPS=(--no-deps)

mkdir -p "$DIR"
# manylinux_2_28 also admits the older manylinux tags (2014 = 2_17); pure-Python wheels
# (py3-none-any) match any platform.
pip download --only-binary=:all: --python-version "$PYVER" --implementation cp --abi "$ABI" \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform linux_x86_64 \
    "${NODEPS[@]}" -d "$DIR" "${WANT[@]}"
if [[ "${DROP_NUMPY:-0}" == 1 ]]; then
    rm -f "$DIR"/numpy-*.whl  # the GPU machine's own numpy (torch's, cupy's) is used
fi

echo
echo "wheels in $DIR:"
ls -1 "$DIR"
echo "total: $(du -sh "$DIR" | cut -f1) in $(ls -1 "$DIR" | wc -l) files"
