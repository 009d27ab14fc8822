#!/usr/bin/env bash
# The first thing to run on a GPU machine: no GPU figures have been measured yet.
#
#     bash bench/gpu_check.sh [--device cuda] [--out DIR] [--dry]
#
# Steps, each with its own time limit (all together under 8 minutes on one GPU):
#   1. gpu tests       pytest -m gpu on the test files that have gpu-marked tests
#   2. cla googlenet   bench/bench_cla.py on the device: googlenet, all 8 block pairs, 64 images
#   3. cla resnet50    bench/bench_cla.py on the device: resnet50, 15 block pairs, 64 images
#   4. ingest          circuits ingest catfish-mini on the device (64 images) into a fresh catalog
#   5. export, apply   circuits export of that circuit and circuits apply (a pruned weights file)
#   6. ablate          circuits ablate of that circuit on the device
# then one summary table: step, status, seconds, the step's result line. Logs go to DIR
# (default: a temporary folder, printed). Exit status: 0 when every step passed.
#
# --dry runs every step at the smallest size (the gpu tests are only collected, the benchmark runs
# its cases' first layer pair on one 32-px image and one reference neuron, ingest uses 2 images),
# so that a default-suite test can run it on a CPU (`--device cpu --dry`) and the script cannot
# rot before a GPU is lent.
set -u

DEVICE=cuda
DRY=0
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --device=*) DEVICE="${1#*=}"; shift ;;
        --out) OUT="$2"; shift 2 ;;
        --out=*) OUT="${1#*=}"; shift ;;
        --dry) DRY=1; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 2
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
if [ -z "$OUT" ]; then OUT="$(mktemp -d -t gpu_check.XXXXXX)"; fi
mkdir -p "$OUT" || exit 2
DB="$OUT/check.duckdb"
rm -f "$DB" "$DB.wal" "$OUT/mask.json" "$OUT/pruned.pt"

CIRCUITS=("$PY" -c 'import sys; from circuits.cli.main import main; sys.argv[0] = "circuits"; main()')

if [ "$DEVICE" != cpu ]; then
    if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "error: --device $DEVICE but torch sees no CUDA device (run with --device cpu --dry to check the script)" >&2
        exit 1
    fi
    "$PY" -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
fi

NAMES=(); STATUS=(); SECONDS_TAKEN=(); RESULTS=()
# step NAME LIMIT_S RESULT_PATTERN COMMAND...: run it with a time limit, log it, keep its result line
step() {
    local name="$1" limit="$2" pattern="$3"; shift 3
    local log="$OUT/${name// /_}.log" t0 t1 rc
    echo "== $name: $*" | tee "$log"
    t0=$(date +%s.%N)
    timeout "$limit" "$@" >>"$log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    local status=ok
    if [ $rc -eq 124 ]; then status="TIMEOUT (${limit} s)"; elif [ $rc -ne 0 ]; then status="FAILED (exit $rc)"; fi
    local result
    result="$(grep -E "$pattern" "$log" | tail -n 1 | sed -E 's/^[[:space:]]+//' | cut -c1-110)"
    [ $rc -ne 0 ] && result="$(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-110)"
    NAMES+=("$name"); STATUS+=("$status"); RESULTS+=("$result")
    SECONDS_TAKEN+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')")
    tail -n 3 "$log" | sed 's/^/   /'
}

GPU_FILES=$(grep -l "pytest.mark.gpu" tests/test_*.py | tr '\n' ' ')
BENCH_RESULT="^ *attribute [0-9.]+ s, reference"
if [ $DRY -eq 1 ]; then
    step "gpu tests" 120 "tests? collected|selected|no tests" \
        "$PY" -m pytest -q -p no:cacheprovider -m gpu --collect-only $GPU_FILES
    SMOKE=(--images 1 --size 32 --pairs 1 --ref-neurons 1 --threads 1 --device "$DEVICE")
    step "cla googlenet" 120 "$BENCH_RESULT" "$PY" bench/bench_cla.py --case googlenet "${SMOKE[@]}"
    step "cla resnet50" 120 "$BENCH_RESULT" "$PY" bench/bench_cla.py --case resnet50 "${SMOKE[@]}"
    N_INGEST=2
else
    step "gpu tests" 120 "passed|failed|skipped|no tests" \
        "$PY" -m pytest -q -p no:cacheprovider -m gpu $GPU_FILES
    step "cla googlenet" 120 "$BENCH_RESULT" \
        "$PY" bench/bench_cla.py --case googlenet --gpu-images 64 --threads auto --device "$DEVICE"
    step "cla resnet50" 150 "$BENCH_RESULT" \
        "$PY" bench/bench_cla.py --case resnet50 --gpu-images 64 --threads auto --device "$DEVICE"
    N_INGEST=64
fi
step "ingest" 60 "stored run|reused run" \
    "${CIRCUITS[@]}" ingest catfish-mini --concept stripes --dataset catfish:stripes --n "$N_INGEST" --k 3 \
    --device "$DEVICE" --batch-size 32 --db "$DB"
step "export" 30 "." "${CIRCUITS[@]}" export stripes -o "$OUT/mask.json" --db "$DB"
step "apply" 60 "." "${CIRCUITS[@]}" apply catfish-mini --mask "$OUT/mask.json" -o "$OUT/pruned.pt"
step "ablate" 60 "^ *accuracy|^ *agreement" \
    "${CIRCUITS[@]}" ablate stripes --dataset catfish:stripes --n "$N_INGEST" --device "$DEVICE" --db "$DB"

echo
echo "gpu_check on $DEVICE$([ $DRY -eq 1 ] && echo ' (dry: smallest sizes)'); logs in $OUT"
printf '%-14s %-20s %8s  %s\n' step status seconds result
failed=0
for i in "${!NAMES[@]}"; do
    printf '%-14s %-20s %8s  %s\n' "${NAMES[$i]}" "${STATUS[$i]}" "${SECONDS_TAKEN[$i]}" "${RESULTS[$i]}"
    [ "${STATUS[$i]}" = ok ] || failed=1
done
total=$(printf '%s\n' "${SECONDS_TAKEN[@]}" | awk '{ s += $1 } END { printf "%.1f", s }')
echo "total ${total} s"
exit $failed
