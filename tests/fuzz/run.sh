#!/usr/bin/env bash
# Fuzzes each libFuzzer target for SECONDS with its corpus tests/fuzz/corpus/<name>/.
# Usage: tests/fuzz/run.sh SECONDS keep|scratch TARGET...
#   keep:    new inputs are added to the corpus (make fuzz);
#   scratch: new inputs go to a temporary directory, the corpus is only read (make test).
# Prints per target its executions and new inputs and PASS/FAIL (with the crash report), then
# "N passed, M failed"; exits non-zero when a target found a crash.
set -u
secs=$1 mode=$2
shift 2
passed=0 failed=0
for bin in "$@"; do
    name=$(basename "$bin" | sed 's/^fuzz_//')
    corpus=tests/fuzz/corpus/$name
    mkdir -p "$corpus"
    out=$(mktemp)
    work=$(mktemp -d)
    if [ "$mode" = keep ]; then dirs=("$corpus"); else dirs=("$work" "$corpus"); fi
    "$bin" -artifact_prefix="$work/" -max_total_time="$secs" -max_len=65536 \
        -print_final_stats=1 "${dirs[@]}" >"$out" 2>&1
    rc=$?
    grep -E 'stat::number_of_executed_units|stat::new_units_added' "$out" | sed "s/^/  $name /"
    if [ $rc -ne 0 ]; then
        echo "FAIL fuzz $name (exit $rc)"
        grep -E 'ERROR|SUMMARY|==[0-9]+==' "$out" | head -20
        failed=$((failed + 1))
    else
        echo "PASS fuzz $name ($secs s)"
        passed=$((passed + 1))
    fi
    rm -rf "$out" "$work"
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
