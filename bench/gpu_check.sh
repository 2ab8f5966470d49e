#!/usr/bin/env bash
# The GPU check of pymdbn's CUDA backend, run once on the GPU machine (one H100 or H200,
# nvcc 13, PyTorch and CuPy for CUDA 13, CMake, ninja, pybind11, scikit-build-core,
# Python 3.12, no network), from the repository root:
#
#   bash bench/gpu_check.sh
#
# Steps (each timed, its exit code logged; a failing step does not stop the later ones):
#   probe      which Python imports torch and cupy; which of pymdbn's needs import there
#   venv       python -m venv --system-site-packages (reuses torch, cupy, numpy, ...)
#   wheels     pip install --no-index --find-links "$WHEELS" whatever is missing
#   build      pip install --no-build-isolation --no-deps -e . with PYMDBN_CUDA=ON, sm_90,
#              CUDACXX = the machine's nvcc
#   config     pymdbn.show_config(), pymdbn.cuda.*
#   cuda-tests pytest (kernels, nn, LRP rules, CD split, preprocessing, backend, device)
#              -k "cuda or gpu", every failure shown
#   bench      python bench/bench_gpu.py --json "$OUT/gpu_report.json" (the report)
#   full-suite pytest -q tests, with whatever time is left (60 s at least, or skipped)
# The benchmark runs before the whole suite, so that the report always gets its time.
#
# Wheels to carry (bash bench/gpu_wheels.sh DIR [all|core] makes them here; put them in
# $WHEELS, default .whl (the device tool's carried folder), else shared/wheels, else ./wheels;
# on the workplace's GPU image `bash bench/gpu_wheels.sh .whl min` is enough):
#   always     scipy-openblas32 (the BLAS pymdbn builds and runs with; not on that machine)
#   if missing scipy, scikit-learn (+ joblib, cloudpickle, narwhals), threadpoolctl: imported
#              by pymdbn, the phantoms, the demo's split, the benchmark
#              pytest (+ iniconfig, pluggy, pygments, packaging): the tests
#              pillow, matplotlib (+ contourpy, cycler, fonttools, kiwisolver, pyparsing,
#              python-dateutil, tzdata), pydicom, nibabel: the other dependencies and the
#              [test] extra, needed by the whole suite only
#              scikit-build-core, pybind11: should be there already
#   'all' is 99 MB (29 wheels), 'core' (no pillow, matplotlib, pydicom, nibabel) 69 MB,
#   54 MB without the numpy wheel (DROP_NUMPY=1), which is only a fallback for the case
#   that the machine's numpy is too old for the SciPy wheel.
# The probe step prints which imports fail before anything is installed.
#
# Environment: WHEELS (folder of wheels), OUT (default ./gpu_out: gpu_check.log,
# gpu_report.json, steps.tsv, pip_freeze.txt), GPU_CHECK_BUDGET (seconds for the whole
# run, default 465), PYTHON (the interpreter; default: the first of python3, python,
# python3.12 that imports torch and cupy), GPU_VENV (default /tmp/pymdbn-gpu-venv),
# CUDACXX (default: the toolkit nvcc: command -v nvcc past wrapper scripts, else
# /usr/local/cuda/bin/nvcc), CUDA_ARCH (default 90), BENCH_ARGS (extra
# arguments for bench_gpu.py, e.g. --cpu-baseline).
set -uo pipefail

OUT=${OUT:-./gpu_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/gpu_check.log"
STEPS="$OUT/steps.tsv"
: > "$LOG"
printf 'step\texit\tseconds\n' > "$STEPS"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!
# On exit, let tee write the last lines to the log before the script ends.
trap 'exec 1>&- 2>&-; wait "$TEE_PID" 2> /dev/null || true' EXIT

BUDGET=${GPU_CHECK_BUDGET:-465}
T0=$SECONDS
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONUNBUFFERED=1
FAILED=()

left() { echo $((BUDGET - (SECONDS - T0))); }
# cap MAX RESERVE: a step's timeout, at most MAX s and leaving RESERVE s for the steps
# after it, at least 10 s.
cap() {
    local t=$(($(left) - $2))
    ((t > $1)) && t=$1
    ((t < 10)) && t=10
    echo "$t"
}
# step NAME TIMEOUT COMMAND...: runs, times and logs one step.
step() {
    local name=$1 t=$2
    shift 2
    echo
    local cmd="$*"
    cmd=${cmd//$'\n'/ }
    ((${#cmd} > 160)) && cmd="${cmd:0:157}..."
    echo "=== [$name] start $(date +%T), timeout ${t}s, $(left)s of the budget left: $cmd"
    local s=$SECONDS rc note=""
    timeout -k 10 "$t" "$@"
    rc=$?
    ((rc == 124 || rc == 137)) && note=" (timed out after ${t}s)"
    echo "=== [$name] exit $rc in $((SECONDS - s))s$note"
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - s))" >> "$STEPS"
    ((rc != 0)) && FAILED+=("$name")
    return "$rc"
}

echo "pymdbn GPU check, $(date -Is), $(hostname), repo $(pwd) at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "budget ${BUDGET}s; OUT=$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "nvidia-smi: not found"
# The toolkit's nvcc: CMake finds the static runtime and cuBLAS beside it (../lib64,
# ../targets/x86_64-linux/lib), so a wrapper script on the PATH (e.g. /usr/local/bin/nvcc
# running /usr/local/cuda-13.0/bin/nvcc) is passed over for the real one.
cuda_root_ok() {
    local r
    r=$(dirname "$(dirname "$1")")
    compgen -G "$r/lib64/libcudart_static.a" > /dev/null ||
        compgen -G "$r/lib/libcudart_static.a" > /dev/null ||
        compgen -G "$r/targets/*/lib/libcudart_static.a" > /dev/null
}
if [[ -z "${CUDACXX:-}" ]]; then
    on_path=$(command -v nvcc || true)
    for c in "$(readlink -f "$on_path" 2> /dev/null)" "${CUDA_HOME:+$CUDA_HOME/bin/nvcc}" \
        "${CUDA_PATH:+$CUDA_PATH/bin/nvcc}" /usr/local/cuda/bin/nvcc /usr/local/cuda-13*/bin/nvcc; do
        if [[ -n "$c" && -x "$c" ]] && cuda_root_ok "$c"; then
            CUDACXX=$c
            break
        fi
    done
    CUDACXX=${CUDACXX:-$on_path}
fi
export CUDACXX
echo "CUDACXX=${CUDACXX:-<no nvcc found>}"
[[ -n "$CUDACXX" ]] && "$CUDACXX" --version | tail -2
cmake --version 2>&1 | head -1
ninja --version 2>&1 | sed 's/^/ninja /'
# cuBLAS of the toolkit at run time (the build links it; torch's nvidia wheels are
# preloaded by pymdbn/backend/_cuda.py when present).
if [[ -n "$CUDACXX" ]]; then
    CUDA_ROOT=$(dirname "$(dirname "$CUDACXX")")
    export LD_LIBRARY_PATH="$CUDA_ROOT/lib64:$CUDA_ROOT/lib:$CUDA_ROOT/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

# --- probe: the interpreter and what it imports ---------------------------------------
if [[ -z "${PYTHON:-}" ]]; then
    for c in python3 python python3.12; do
        if command -v "$c" > /dev/null && "$c" -c "import torch, cupy" 2> /dev/null; then
            PYTHON=$(command -v "$c")
            break
        fi
    done
    PYTHON=${PYTHON:-$(command -v python3)}
fi
echo "PYTHON=$PYTHON ($("$PYTHON" --version 2>&1))"
# A toolkit without cuBLAS: link the cuBLAS of the nvidia-cublas wheel that CUDA 13
# PyTorch installs (pymdbn/backend/_cuda.py preloads the same one at run time).
if [[ -n "${CUDA_ROOT:-}" ]] && ! compgen -G "$CUDA_ROOT/lib64/libcublas.so*" > /dev/null &&
    ! compgen -G "$CUDA_ROOT/targets/*/lib/libcublas.so*" > /dev/null &&
    ! compgen -G "$CUDA_ROOT/lib/libcublas.so*" > /dev/null; then
    WHEEL_CUBLAS=$("$PYTHON" -c "import nvidia, os; print(next(os.path.join(p, 'cu13', 'lib') for p in nvidia.__path__ if os.path.exists(os.path.join(p, 'cu13', 'lib', 'libcublas.so.13'))))" 2> /dev/null || true)
    if [[ -n "$WHEEL_CUBLAS" ]]; then
        echo "no cuBLAS beside $CUDACXX: linking $WHEEL_CUBLAS's"
        export CMAKE_LIBRARY_PATH="$WHEEL_CUBLAS${CMAKE_LIBRARY_PATH:+:$CMAKE_LIBRARY_PATH}"
        export LD_LIBRARY_PATH="$WHEEL_CUBLAS:$LD_LIBRARY_PATH"
    else
        echo "warning: no cuBLAS beside $CUDACXX nor in an nvidia-cublas wheel: the build will fail"
    fi
fi

PROBE="$OUT/probe_imports.py"
cat > "$PROBE" << 'EOF'
import importlib

names = ["numpy", "torch", "cupy", "scipy", "sklearn", "threadpoolctl", "PIL", "matplotlib",
         "pydicom", "nibabel", "pytest", "scipy_openblas32", "pybind11", "scikit_build_core"]
missing = []
for name in names:
    try:
        mod = importlib.import_module(name)
        extra = ""
        if name == "torch":
            extra = f" (CUDA {mod.version.cuda}, available {mod.cuda.is_available()})"
        if name == "cupy":
            extra = f" (runtime {mod.cuda.runtime.runtimeGetVersion()})"
        print(f"  ok       {name:18s} {getattr(mod, '__version__', '?')}{extra}")
    except Exception as exc:
        missing.append(name)
        print(f"  MISSING  {name:18s} {type(exc).__name__}: {exc}")
print("imports that fail:", " ".join(missing) or "none")
EOF
step probe 60 "$PYTHON" "$PROBE"

# --- venv --------------------------------------------------------------------------------
VENV=${GPU_VENV:-/tmp/pymdbn-gpu-venv}
make_venv() {
    rm -rf "$VENV"
    "$PYTHON" -m venv --system-site-packages "$VENV" && return 0
    echo "venv with pip failed; trying --without-pip (pip then comes from the system site-packages)"
    rm -rf "$VENV"
    "$PYTHON" -m venv --system-site-packages --without-pip "$VENV"
}
export -f make_venv
export VENV PYTHON
if step venv 90 bash -c make_venv; then
    # shellcheck disable=SC1091
    . "$VENV/bin/activate"
    PY=python
else
    echo "no venv: installing into the user site of $PYTHON instead"
    PY=$PYTHON
    PIP_USER_FLAG=--user
fi
export PY
"$PY" -m pip --version

# --- wheels ------------------------------------------------------------------------------
if [[ -z "${WHEELS:-}" ]]; then
    for d in .whl shared/wheels ./wheels; do
        [[ -d "$d" ]] && WHEELS=$d && break
    done
fi
WHEELS=${WHEELS:-./wheels}
echo "WHEELS=$WHEELS ($(ls "$WHEELS"/*.whl 2> /dev/null | wc -l) wheels, $(du -sh "$WHEELS" 2> /dev/null | cut -f1))"
export WHEELS PIP_USER_FLAG=${PIP_USER_FLAG:-}
REQS=("scipy-openblas32>=0.3.27" "scikit-build-core>=0.10" "pybind11>=2.12" "scipy>=1.10"
    "scikit-learn>=1.6" "threadpoolctl>=3" "pytest>=7" "pillow>=9" "matplotlib>=3.7"
    "pydicom>=2.4" "nibabel>=5")
install_wheels() {
    # All at once first (one pip start); if that fails, one requirement at a time, so
    # that one which cannot be met does not block the others. pip leaves a satisfied
    # requirement alone.
    local bad=() req out rc
    # shellcheck disable=SC2086
    if out=$("$PY" -m pip install $PIP_USER_FLAG --no-index --find-links "$WHEELS" "$@" 2>&1); then
        grep -E '^(Successfully installed|ERROR|WARNING)' <<< "$out" || echo "all present"
        return 0
    fi
    echo "$out" | tail -3
    echo "one at a time:"
    for req in "$@"; do
        # shellcheck disable=SC2086
        out=$("$PY" -m pip install $PIP_USER_FLAG --no-index --find-links "$WHEELS" "$req" 2>&1)
        rc=$?
        if ((rc != 0)); then
            bad+=("$req")
            echo "FAILED   $req"
            echo "$out" | tail -3 | sed 's/^/         /'
        elif grep -q '^Successfully installed' <<< "$out"; then
            echo "install  $req: $(grep '^Successfully installed' <<< "$out" | cut -d' ' -f3-)"
        else
            echo "present  $req"
        fi
    done
    echo "not installed (absent from $WHEELS and from the machine): ${bad[*]}"
    return 1
}
export -f install_wheels
step wheels 150 bash -c 'install_wheels "$@"' install_wheels "${REQS[@]}"
step probe-after-install 60 "$PY" "$PROBE"

# --- build -------------------------------------------------------------------------------
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
build() {
    "$PY" -m pip install $PIP_USER_FLAG --no-index --no-build-isolation --no-deps -e . \
        -Ccmake.define.PYMDBN_CUDA=ON \
        -Ccmake.define.CMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}"
}
export -f build
# The build gets up to 5 minutes, leaving 4 for the tests and the benchmark.
step build "$(cap 300 240)" bash -c build

CONFIG='
import pymdbn
pymdbn.show_config()
print("cuda.is_available:", pymdbn.cuda.is_available())
print("cuda.unavailable_reason:", pymdbn.cuda.unavailable_reason())
if pymdbn.cuda.is_available():
    print("cuda.device_name:", pymdbn.cuda.device_name())
'
step config 60 "$PY" -c "$CONFIG"

# --- CUDA tests --------------------------------------------------------------------------
# Every failure, not the first only (--maxfail bounds a broken build's output): the one
# GPU run of an issue has to show all that differs.
step cuda-tests "$(cap 150 210)" "$PY" -m pytest -q -rfE --maxfail=60 -p no:cacheprovider \
    tests/test_kernels.py tests/test_kernels_nn.py tests/test_lrp_rules.py \
    tests/test_cd_split.py tests/test_preprocessing.py tests/test_backend.py \
    tests/test_device.py -k "cuda or gpu"

# --- the benchmark -----------------------------------------------------------------------
BT=$(cap 330 15)
# shellcheck disable=SC2086
step bench "$BT" "$PY" bench/bench_gpu.py --json "$OUT/gpu_report.json" \
    --budget $((BT - 20)) ${BENCH_ARGS:-}

# --- the whole suite, with what is left --------------------------------------------------
if (($(left) >= 60)); then
    step full-suite "$(cap 100000 5)" "$PY" -m pytest -q -p no:cacheprovider --durations=10 tests
else
    echo
    echo "=== [full-suite] skipped: $(left)s of the budget left"
    printf 'full-suite\tskipped\t0\n' >> "$STEPS"
fi

"$PY" -m pip freeze > "$OUT/pip_freeze.txt" 2>&1
echo
echo "=== summary ($((SECONDS - T0))s in all)"
column -t -s $'\t' "$STEPS" 2> /dev/null || cat "$STEPS"
if [[ -f "$OUT/gpu_report.json" ]]; then
    "$PY" - "$OUT/gpu_report.json" << 'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print("report:", sys.argv[1])
print("cuda:", r["cuda"].get("available"), r["cuda"].get("reason") or r["cuda"].get("device_name"))
for name, s in r["sections"].items():
    print(f"  {name:10s} {s.get('status')}  {s.get('reason') or s.get('error') or ''}")
for g in r.get("goals", []):
    print(f"  goal {g['where']}: {g['name']} = {g['value']} ({g['goal']}): {g['met']}")
EOF
else
    echo "no report written"
fi
echo "log: $LOG"
((${#FAILED[@]})) && echo "failed steps: ${FAILED[*]}" && exit 1
exit 0
