#!/usr/bin/env bash
# The long tier (make torture): many crash cycles, 1000+ power-loss states, every disk-fault
# case, 60 s of fuzzing per target, the unit tests under valgrind, and a 30-minute soak.
# Prints each step's figures and, last, the sum "N passed, M failed". Not part of make test.
set -u
cd "$(dirname "$0")/.."
BIN=./build/annals
total_p=0
total_f=0
step() { # name, command...
    local name=$1
    shift
    echo "== $name: $*"
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    echo "$out" | grep -E '^(FAIL|PASS soak)|passed, [0-9]+ failed|^ *[0-9.]+ +[0-9.]+ +[0-9.]+|stat::|SUMMARY|ERROR|own memory|events stored' | tail -80
    local line p f
    line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
    if [ -n "$line" ]; then
        p=${line%% passed*}
        f=${line#*passed, }
        f=${f%% failed}
    else
        p=$([ $rc -eq 0 ] && echo 1 || echo 0)
        f=$([ $rc -eq 0 ] && echo 0 || echo 1)
    fi
    [ $rc -ne 0 ] && [ "$f" = 0 ] && f=1
    echo "$name: $p passed, $f failed"
    total_p=$((total_p + p))
    total_f=$((total_f + f))
}
step "crash cycles (100)" env ANNALS_CRASH_CYCLES="${TORTURE_CRASH_CYCLES:-100}" \
    python3 tests/integration/run.py --bin "$BIN" -k kill9 --timeout 3600
step "power loss (1000 states)" python3 tests/powerloss/run.py --bin "$BIN" \
    --states "${TORTURE_POWERLOSS_STATES:-1000}" --seed "${RANDOM}"
step "disk faults (every N, EIO)" python3 tests/faults/run.py --bin "$BIN" --all
step "disk faults (every N, ENOSPC)" python3 tests/faults/run.py --bin "$BIN" --all --errno ENOSPC
step "fuzzing (${FUZZ_SECONDS:-60} s per target)" make -s --no-print-directory fuzz \
    FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
for t in build/tests/*_test; do
    step "valgrind $(basename "$t")" valgrind -q --error-exitcode=99 --leak-check=full \
        --trace-children=yes "$t"
done
step "soak (${SOAK_MINUTES:-30} min)" python3 tests/soak/run.py --bin "$BIN" \
    --minutes "${SOAK_MINUTES:-30}"
echo "$total_p passed, $total_f failed"
[ "$total_f" = 0 ]
