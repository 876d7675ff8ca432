#!/usr/bin/env bash
# Annals benchmark harness (`make bench`). Usage: bench/run.sh ANNALS_BIN COMMIT_CEILING_BIN LOADER
#
# Measures, on this machine, with every server on 127.0.0.1 and a fresh temporary data dir:
#   1. Annals over HTTP (bench/loadgen, 64 keep-alive connections, one request in flight on
#      each; a C load generator, because wrk's per-request Lua took a third of the 2 cores
#      from the server it measured; (a) is run once more with wrk + Lua as a cross-check):
#      (a) single-event durable appends, each connection to its own streams;
#      (b) the same, all to one stream (expectedVersion "any");
#      (c) 100-event batches (events/s = requests/s * 100);
#      (d) reading a 100-event stream (GET .../streams/{s}/events?limit=100);
#      (e) syncs per acknowledged append during (a), from the database statistics
#          (GET /v1/databases/default): an append is durable once its group-commit batch is in
#          the append-only event log and that log is fdatasync'd (writer.syncs, one per batch);
#          the LMDB index is updated later by the indexer thread, one fdatasync per index
#          transaction (indexer.commits, MDB_NOMETASYNC). So
#            syncs per append = (d writer.syncs + d indexer.commits) / d writer.appends,
#          with the index counted until the indexer has caught up with the run's appends.
#          Confirmed with strace (all threads of the server, fdatasync and friends) when it is
#          installed;
#      (f) conditional appends: one stream-less event per request with a DCB condition
#          (failIfEventsMatch on a tag no other request uses, so every condition holds);
#      (g) a query returning 100 events of a rare type with 1M and then 10M events stored
#          (loaded in process by bench/load_events; BENCH_QUERY_SMALL / BENCH_QUERY_BIG);
#      (h) single-event appends as (a), each with a new Idempotency-Key (the key, a request
#          hash and the answer are stored in the same batch as the event);
#      (i) single-event appends as (a) through the DeltaBase dialect (its rate limit off),
#          then (i') native ones right after, on the same store: the dialect's cost;
#      (j) single-event appends with ?returnState=true, a Lua reducer bound to their category,
#          then (j') plain ones right after: the cost of the state in the answer;
#      (k) the state of a 100-event stream (GET .../state, from the reducer's snapshot);
#      (l) single-CloudEvent appends through the EvidentSource dialect, then (l') native ones
#          right after; (m) 100-CloudEvent appends; (n) a selector query returning 100
#          events; (o) a state view folding 1,000 events: its first read, then repeated reads;
#      (p) single-event Hapnd appends to aggregates whose type has a Lua reducer (its state in
#          every 201), then (p') native plain ones right after; (q) the Hapnd state GET of a
#          100-event aggregate;
#      (r) j17 single-event writes through the j17 dialect: the data validated against the
#          event's JSON Schema, a Tick handler, and one implication (an event to a second
#          aggregate in the same commit), then (r') native plain ones right after; (s) the j17
#          state GET of a 100-event aggregate (Tick reducer, state cache and snapshot), and
#          (s') the same with ?synchronous=true;
#      (t) DeQL EXECUTE through the DeQL dialect: a decision whose STATE AS sums the command's
#          stream (DeReg."Account$Events") and whose guard checks the amount, each request to
#          its own stream (a few events each, no append condition fails), then (t') native plain
#          appends right after; the group-commit factor during (t); (u) the DeQL state GET
#          (GET /deql/api/aggregates/Account/{id}, the $Agg view) of a 100-event stream;
#   1a. projection catch-up: a Lua projection deployed over 1M events, until live (natively
#      in Lua, then JavaScript, then the Lua one uploaded as a zip through the Hapnd dialect);
#   1b. live fan-out (bench/sse_fanout): 1,000 SSE subscribers on one database under a steady
#      append load, delivery latency p50/p99 from commit to receipt, and server memory;
#   1c. compaction (bench_compact): 1M events, half the streams deleted: duration, MB/s of log,
#      bytes reclaimed, server memory;
#   1d. DeQL on its own server (--deql-workers 32): (t*) as (t), then (v) a GROUP BY projection
#      over BENCH_DEQL_EVENTS events (default 1M, appended through the native API with the tag
#      deql:Reading): GET .../projections/ByDevice/query one at a time, median latency and events
#      scanned per second; if the default SQL step budget stops it, again with --deql-sql-steps;
#   2. the in-process group-commit ceiling of the log-based store (bench/commit_ceiling.c, no
#      HTTP), distinct streams and ONE=1;
#   3. Redis 7 streams (XADD, appendfsync always) with redis-benchmark, distinct keys / one key;
#   4. PostgreSQL 15 (fsync=on, synchronous_commit=on), a plpgsql append() with a per-stream
#      version check, driven by pgbench, distinct streams / one stream;
#   5. ratios of Annals to Redis and PostgreSQL, and the targets next to the figures.
# Memory: VmRSS of the server after each run, with its anonymous part (RssAnon) and the
# resident pages of its mapping of the event log (and of the LMDB index) broken out: the log
# and the index are mmapped read-only, so their page-cache pages count in VmRSS and grow with
# the data written, although the kernel can reclaim them at any time.
# It is a report: it exits 0 whatever the figures are, and non-zero only when a component is
# missing or fails to start. Every process it starts is stopped on exit.
#
# Environment:
#   BENCH_SECONDS=10          seconds per measured run
#   BENCH_RUNS=3              runs of (a) and (b), the cases with targets: the median is kept
#   BENCH_CONNECTIONS=64      concurrent connections / clients
#   BENCH_WRK_THREADS=2       load generator threads (loadgen -t, wrk -t, pgbench -j)
#   BENCH_DEQL_EVENTS=1000000 events the DeQL GROUP BY projection (v) reads
#   BENCH_DEQL_QUERIES=5      timed queries of (v) after the first
#   BENCH_CEILING_SECONDS=1   seconds per batch size in the commit ceiling tool (5 sizes x 2)
#   BENCH_STRACE=1            0 skips the strace confirmation of (e)
#   BENCH_WRITE_RESULTS=0     1 writes the figures to docs/benchmarks.md
#   BENCH_KEEP=0              1 keeps the temporary directory (logs, data) for inspection
#   BENCH_TMPDIR=/tmp         where the temporary directory is made (must be a real disk:
#                             on tmpfs fsync is free and the figures mean nothing)
set -u
set -o pipefail

ANNALS=${1:-./build/annals}
CEILING=${2:-./build/bench/commit_ceiling}
LOADER=${3:-./build/bench/load_events}
FANOUT=${4:-$(dirname "$CEILING")/sse_fanout}
LOADGEN=${5:-$(dirname "$CEILING")/loadgen}
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-64}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
CEIL_SECS=${BENCH_CEILING_SECONDS:-1}
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
BATCH=100

die() {
    echo "bench: $*" >&2
    exit 1
}
say() { printf '%s\n' "$*"; }

for tool in wrk curl python3 redis-server redis-benchmark redis-cli pgbench psql; do
    command -v "$tool" >/dev/null || die "$tool is not installed (run: bash scripts/deps.sh --bench)"
done
[ -x "$ANNALS" ] || die "no Annals binary at $ANNALS (run: make)"
[ -x "$CEILING" ] || die "no commit ceiling tool at $CEILING (run: make build/bench/commit_ceiling)"
[ -x "$LOADER" ] || die "no loader at $LOADER (run: make build/bench/load_events)"
[ -x "$LOADGEN" ] || die "no load generator at $LOADGEN (run: make build/bench/loadgen)"
PGBIN=""
for d in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
        PGBIN=$d
        break
    fi
done
[ -n "$PGBIN" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"

TMP=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/annals-bench.XXXXXX") || die "cannot make a temp dir"
chmod 755 "$TMP"

# ---------------------------------------------------------------- process bookkeeping
APID=""    # annals server
RPID=""    # redis-server
PGDATA=""  # postgres cluster (pg_ctl daemonizes; stopped by data dir, then by its pid)
PGUSER_OS=""
BGPIDS=()  # background helpers (wrk, strace, samplers)

as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$PGUSER_OS" -- "$@"
    else
        "$@"
    fi
}

stop_pid() { # pid: TERM, wait up to 10 s, then KILL
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

stop_postgres() {
    [ -n "$PGDATA" ] || return 0
    local ppid=""
    [ -f "$PGDATA/postmaster.pid" ] && ppid=$(head -1 "$PGDATA/postmaster.pid")
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 20 stop >/dev/null 2>&1 ||
        { [ -n "$ppid" ] && stop_pid "$ppid"; }
    PGDATA=""
}

cleanup() {
    local p
    for p in "${BGPIDS[@]}"; do stop_pid "$p"; done
    [ -n "$APID" ] && stop_pid "$APID"
    [ -n "$RPID" ] && stop_pid "$RPID"
    stop_postgres
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "bench: kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers
port_free() {
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}
free_port() { # preferred port if free, else one the kernel picks
    if [ -n "${1:-}" ] && port_free "$1"; then
        echo "$1"
        return
    fi
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# mem_sample PID -> "vmrss anon log index" in KiB: VmRSS, RssAnon, and the resident pages of the
# process's mappings of an Annals event log (events.log) and LMDB index (data.mdb). Those are
# page-cache pages of read-only file mappings: they count in VmRSS, grow with the data written,
# and are reclaimable. A field that cannot be read (process gone, kernel without RssAnon) is "-".
mem_sample() {
    local pid=${1:-}
    [ -n "$pid" ] && [ -r "/proc/$pid/status" ] || { echo "- - - -"; return 0; }
    local out
    out=$(awk '
        FILENAME ~ /status$/ { if ($1 == "VmRSS:") rss = $2; else if ($1 == "RssAnon:") anon = $2; next }
        /^[0-9a-f]+-[0-9a-f]+ / { cur = ($NF ~ /\/events(\.[0-9]+)?\.log$/) ? "log" : (($NF ~ /\/data\.mdb$/) ? "idx" : ""); next }
        $1 == "Rss:" && cur != "" { m[cur] += $2 }
        END { if (rss == "") rss = "-"; if (anon == "") anon = "-"
              printf "%s %s %s %s\n", rss, anon, m["log"] + 0, m["idx"] + 0 }' \
        "/proc/$pid/status" "/proc/$pid/smaps" 2>/dev/null)
    [ -n "$out" ] || out="- - - -"
    echo "$out"
}
rss_kb() { local m; m=$(mem_sample "$1"); echo "${m%% *}"; }
mib() { awk -v k="${1:-}" 'BEGIN { if (k !~ /^[0-9.]+$/ || k + 0 == 0) print "-"; else printf "%.1f", k / 1024 }'; }

# Sum of PSS over a process and its children (PostgreSQL is one process per connection
# plus shared buffers; PSS counts shared pages once).
pss_tree_kb() {
    local root=$1 p sum=0 v
    for p in $root $(pgrep -P "$root" 2>/dev/null); do
        v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

to_ms() { # wrk latency value (123.45us, 1.23ms, 1.02s, 1.00m) -> ms
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) printf "%.2f", v / 1000;
        else if (v ~ /ms$/) printf "%.2f", v + 0;
        else if (v ~ /m$/) printf "%.2f", v * 60000;
        else if (v ~ /s$/) printf "%.2f", v * 1000;
        else print "-" }'
}
fmt_int() { awk -v v="${1:-}" 'BEGIN { if (v == "" || v == "-") { print "-"; exit }
    s = sprintf("%.0f", v); out = ""; n = length(s)
    for (i = 1; i <= n; i++) { out = out substr(s, i, 1); if ((n - i) % 3 == 0 && i < n) out = out "," }
    print out }'; }
ratio() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2fx", a / b }'; }

# Results, keyed by case.
declare -A RPS EVS P50 P99 ERRS RSS ANON NOTE
CASES=()
record() { # key rps events/s p50 p99 errors mem_kb anon_kb note
    CASES+=("$1")
    RPS[$1]=$2 EVS[$1]=$3 P50[$1]=$4 P99[$1]=$5 ERRS[$1]=$6 RSS[$1]=$7 ANON[$1]=$8 NOTE[$1]=${9:-}
}

# ---------------------------------------------------------------- Annals
# annals_stats: one line of the database statistics of "default", in this order:
#   writer.commits writer.appends writer.syncs writer.syncSeconds
#   indexer.commits indexer.indexed head indexer.seconds
annals_stats() {
    curl -sf "http://127.0.0.1:$APORT/v1/databases/default" | python3 -c '
import json, sys
d = json.load(sys.stdin)
w, i = d["writer"], d["indexer"]
print(w["commits"], w["appends"], w["syncs"], "%.6f" % w["syncSeconds"],
      i["commits"], i["indexed"], d["head"], "%.6f" % i["seconds"])'
}

# wait_indexed [MAX_SECONDS]: wait until the indexer has caught up with the log (indexed =
# head), so that the index transactions the appends of a run cause are all counted. Prints
# the seconds waited; returns 1 if it did not catch up in time.
wait_indexed() {
    local max=${1:-60} t0 st
    t0=$(date +%s.%N)
    while :; do
        st=$(annals_stats) || return 1
        set -- $st
        [ "$6" -ge "$7" ] && break
        awk -v t0="$t0" -v now="$(date +%s.%N)" -v m="$max" 'BEGIN { exit !(now - t0 > m) }' && {
            awk -v t0="$t0" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f", now - t0 }'
            return 1
        }
        sleep 0.05
    done
    awk -v t0="$t0" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f", now - t0 }'
}

start_annals() { # [DATA_DIR [SERVER FLAGS...]]
    APORT=$(free_port 7171)
    local data=${1:-$TMP/annals}
    [ $# -gt 0 ] && shift
    mkdir -p "$data"
    "$ANNALS" serve --data "$data" --listen "127.0.0.1:$APORT" --log-level warn \
        --dialect-rate deltabase=0,j17=0 "$@" \
        >"$TMP/annals.log" 2>&1 &
    APID=$!
    local i
    for i in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$APORT/health" >/dev/null 2>&1 && return 0
        kill -0 "$APID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$TMP/annals.log" >&2
    APID=""
    die "Annals did not start on 127.0.0.1:$APORT"
}

# note_case KEY LABEL EVENTS_PER_REQUEST RPS P50 P99 ERRORS STATUSES FIRST_ERROR OUTPUT_FILE:
# after a load run, samples the server's memory (and dies if the server did), records the
# case and prints its line.
note_case() {
    local key=$1 label=$2 per=$3 rps=$4 p50=$5 p99=$6 errs=$7 statuses=$8 first=$9 out=${10}
    local rss anon logm idxm evs memnote
    read -r rss anon logm idxm < <(mem_sample "$APID")
    kill -0 "$APID" 2>/dev/null || { cat "$out" "$TMP/annals.log" >&2; APID=""; die "Annals died during $label"; }
    evs=$(awk -v r="$rps" -v k="$per" 'BEGIN { printf "%.0f", r * k }')
    memnote="RSS = anon $(mib "$anon") + event log mapping $(mib "$logm") + index mapping $(mib "$idxm") + other MiB"
    record "$key" "$rps" "$evs" "$p50" "$p99" "$errs" "$rss" "$anon" "statuses $statuses; $memnote"
    printf '  %-44s %10s req/s %12s events/s  p50 %7s ms  p99 %7s ms  non-2xx %s\n' \
        "$label" "$(fmt_int "$rps")" "$(fmt_int "$evs")" "$p50" "$p99" "$errs"
    say "    memory: VmRSS $(mib "$rss") MiB = anon $(mib "$anon") + event log mapping $(mib "$logm") + index mapping $(mib "$idxm") + other"
    [ -n "$first" ] && say "    first non-2xx answer: $first"
    return 0
}

# run_wrk KEY LABEL EVENTS_PER_REQUEST SCRIPT [script args...]
run_wrk() {
    local key=$1 label=$2 per=$3 script=$4
    shift 4
    local out="$TMP/wrk-$key.txt"
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"${SECS}s" --timeout 10s --latency \
        -s "$BENCH_DIR/$script" "http://127.0.0.1:$APORT" -- "$@" >"$out" 2>&1
    local rc=$?
    local rps p50 p99 non2xx sockerr statuses first
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    non2xx=$(sed -n 's/^annals-bench: .* non2xx=\([0-9]*\) .*/\1/p' "$out")
    statuses=$(sed -n 's/^annals-bench: .* statuses=\(.*\)$/\1/p' "$out")
    first=$(sed -n 's/^annals-bench: first non-2xx: //p' "$out")
    sockerr=$(sed -n 's/^ *Socket errors: //p' "$out")
    [ -n "$rps" ] || { sed 's/^/    wrk: /' "$out"; rps=0; }
    if [ -z "$non2xx" ]; then # the Lua summary is missing: fall back on wrk's own count
        non2xx=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$out")
        non2xx="${non2xx:-0} (wrk count; Lua summary missing)"
        grep -v -e '^ ' -e '^Running' -e '^Requests/sec' -e '^Transfer/sec' "$out" | head -5 | sed 's/^/    wrk: /'
    fi
    local errs=${non2xx:-?}
    [ -n "$sockerr" ] && errs="$errs (socket: $sockerr)"
    [ $rc -ne 0 ] && errs="$errs (wrk exit $rc)"
    note_case "$key" "$label" "$per" "$rps" "$p50" "$p99" "$errs" "$statuses" "$first" "$out"
}

# run_load KEY LABEL EVENTS_PER_REQUEST [loadgen options...] PATH: $CONNS connections for
# $SECS s against the Annals under test. PATH and the options may hold loadgen's tokens ({p}
# a prefix unique to the load generator's thread and run, {n} its counter, {m} the counter
# modulo 10000).
run_load() {
    local key=$1 label=$2 per=$3
    shift 3
    local args=("$@")
    local path=${args[-1]}
    unset 'args[-1]'
    local out="$TMP/load-$key.txt"
    "$LOADGEN" -t "$WRK_THREADS" -c "$CONNS" -d "$SECS" "${args[@]}" "http://127.0.0.1:$APORT$path" \
        >"$out" 2>&1
    local rc=$?
    local line rps p50 p99 non2xx statuses first sockerr
    line=$(grep '^loadgen: requests=' "$out")
    field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    rps=$(field rps) p50=$(field p50_ms) p99=$(field p99_ms) statuses=$(field statuses)
    sockerr=$(field errors)
    first=$(sed -n 's/^loadgen: first non-2xx: //p' "$out")
    [ -n "$rps" ] || { sed 's/^/    loadgen: /' "$out"; rps=0; }
    non2xx=$(tr ',' '\n' <<<"$statuses" | awk -F: '$1 !~ /^2/ { n += $2 } END { print n + 0 }')
    local errs=$non2xx
    [ "${sockerr:-0}" != 0 ] && errs="$errs (connection errors: $sockerr)"
    [ $rc -ne 0 ] && errs="$errs (loadgen exit $rc)"
    note_case "$key" "$label" "$per" "$rps" "$p50" "$p99" "$errs" "$statuses" "$first" "$out"
}

# run_load_median KEY LABEL EVENTS_PER_REQUEST [loadgen options...] PATH: run_load RUNS times
# (BENCH_RUNS, default 3) and records the run with the median throughput under KEY, the
# throughput of every run in its note. For the cases with targets: on this shared 2-core
# machine one 10 s run moves by 15 % from one minute to the next.
run_load_median() {
    local key=$1 label=$2
    shift 2
    local runs=${BENCH_RUNS:-3} i keys=() k
    for i in $(seq 1 "$runs"); do
        run_load "$key~$i" "$label (run $i of $runs)" "$@"
        keys+=("$key~$i")
    done
    local sorted med all=""
    sorted=$(for k in "${keys[@]}"; do echo "${RPS[$k]} $k"; done | sort -n)
    med=$(awk -v m=$(((runs + 1) / 2)) 'NR == m {print $2}' <<<"$sorted")
    for k in "${keys[@]}"; do all="$all${all:+ / }$(fmt_int "${RPS[$k]}")"; done
    local rest=()
    for k in "${CASES[@]}"; do [[ $k == "$key~"* ]] || rest+=("$k"); done
    CASES=("${rest[@]}")
    record "$key" "${RPS[$med]}" "${EVS[$med]}" "${P50[$med]}" "${P99[$med]}" "${ERRS[$med]}" \
        "${RSS[$med]}" "${ANON[$med]}" "median of $runs runs ($all req/s); ${NOTE[$med]}"
    say "    median of $runs runs: $(fmt_int "${RPS[$key]}") req/s ($all)"
}

# The request bodies of the append cases.
EVENT='{"type":"bench.appended","data":{"n":1,"text":"hello world"}}'
JSON=(-X POST -H 'Content-Type: application/json')
batch_body() { # N: N events in one append
    local i sep="" out='{"events":['
    for i in $(seq 1 "$1"); do
        out="$out$sep{\"type\":\"bench.appended\",\"data\":{\"n\":$i,\"text\":\"hello world\"}}"
        sep=,
    done
    printf '%s]}' "$out"
}
STREAMS=/v1/databases/default/streams

# sync_calls FILE FROM TO: sync system calls in an `strace -f -ttt` log that returned in
# [FROM, TO) (epoch seconds): prints "fdatasync other".
sync_calls() {
    awk -v from="$2" -v to="$3" '
        { # "PID EPOCH call(...) = 0", "PID EPOCH <... call resumed>...": count at the return
            if ($0 ~ /<unfinished \.\.\.>/) next
            ts = ""; call = ""
            for (k = 1; k <= 2 && k < NF; k++) if ($k ~ /^[0-9]+\.[0-9]+$/) { ts = $k; break }
            if (ts == "") next
            if (match($0, /<\.\.\. [a-z_]+ resumed>/)) call = substr($0, RSTART + 5, RLENGTH - 14)
            else if (match($(k + 1), /^[a-z_]+\(/)) call = substr($(k + 1), 1, RLENGTH - 1)
            if (call !~ /^(fdatasync|fsync|msync|sync_file_range|syncfs|sync)$/) next
            if (ts + 0 < from + 0 || ts + 0 >= to + 0) next
            if (call == "fdatasync") f++; else o++
        }
        END { print f + 0, o + 0 }' "$1"
}

strace_confirm() { # a short extra run of (a) under strace, counting the sync calls
    local out="$TMP/strace.txt"
    # Start from an idle server whose index has caught up, trace all its threads (-f on an
    # attached process attaches every thread), then run 3 s of load. The server syncs nothing
    # outside the load but the indexer catching up, so strace and the counters see the same syncs.
    wait_indexed 60 >/dev/null
    strace -f -ttt -e trace=fdatasync,fsync,msync,sync_file_range,syncfs,sync -o "$out" -p "$APID" \
        >/dev/null 2>"$TMP/strace.err" &
    local spid=$! i
    BGPIDS+=("$spid")
    for i in $(seq 1 50); do
        grep -q attached "$TMP/strace.err" 2>/dev/null && break
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.1
    done
    local threads
    threads=$(sed -n 's/.*attached with \([0-9]*\) threads.*/\1/p' "$TMP/strace.err" | head -1)
    local before after_load after t0 t1 t2 waited
    t0=$(date +%s.%N)
    before=$(annals_stats) || die "cannot read Annals statistics"
    "$LOADGEN" -t "$WRK_THREADS" -c "$CONNS" -d 3 "${JSON[@]}" -b "{\"events\":[$EVENT]}" \
        "http://127.0.0.1:$APORT$STREAMS/s-{p}-{m}/events" >"$TMP/load-strace.txt" 2>&1
    after_load=$(annals_stats) || die "cannot read Annals statistics"
    t1=$(date +%s.%N)
    waited=$(wait_indexed 60)
    after=$(annals_stats) || die "cannot read Annals statistics"
    t2=$(date +%s.%N)
    kill -INT "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    BGPIDS=()
    local f_load o_load f_tail o_tail
    read -r f_load o_load < <(sync_calls "$out" "$t0" "$t1")
    read -r f_tail o_tail < <(sync_calls "$out" "$t1" "$t2")
    local b a l
    read -r -a b <<<"$before"
    read -r -a l <<<"$after_load"
    read -r -a a <<<"$after"
    local da=$((l[1] - b[1])) ds=$((l[2] - b[2])) dic=$((l[4] - b[4])) dic_tail=$((a[4] - l[4]))
    if [ "$da" -gt 0 ] && [ $((f_load + o_load)) -gt 0 ]; then
        STRACE_LINE=$(awk -v th="${threads:-?}" -v f="$f_load" -v o="$o_load" -v da="$da" -v ds="$ds" \
            -v dic="$dic" -v ft="$f_tail" -v ot="$o_tail" -v dt="$dic_tail" -v w="${waited:-?}" 'BEGIN {
            printf "strace (all %s server threads; tracing slows the server), 3 s of (a): %d fdatasync calls", th, f
            if (o) printf " + %d other sync calls", o
            printf " for %d acknowledged appends = %.4f syncs per append", da, (f + o) / da
            printf " (the counters, same window: %d log + %d index = %d syncs);", ds, dic, ds + dic
            printf " until the indexer had caught up (within %s s) %d more (counters: %d index commits), %.4f per append in all",
                w, ft + ot, dt, (f + o + ft + ot) / da }')
    else
        STRACE_LINE="strace: no sync calls seen (tracing not permitted here?); see $TMP/strace.err"
    fi
    say "  $STRACE_LINE"
}

bench_annals() {
    say "== 1. Annals $("$ANNALS" version 2>/dev/null | head -1) on 127.0.0.1 (HTTP, loadgen $CONNS connections, $WRK_THREADS threads, ${SECS} s per case)"
    start_annals
    say "  server pid $APID ($(ls "/proc/$APID/task" 2>/dev/null | wc -l) threads), port $APORT, data $TMP/annals, RSS at start $(mib "$(rss_kb "$APID")") MiB"

    local before after_load after
    before=$(annals_stats) || die "cannot read Annals statistics"
    run_load_median annals_distinct "(a) 1-event appends, distinct streams" 1 "${JSON[@]}" \
        -b "{\"events\":[$EVENT]}" "$STREAMS/d-{p}-{m}/events"
    after_load=$(annals_stats) || die "cannot read Annals statistics"
    # The index is updated in the background: count its transactions until it has caught up
    # with the appends of the run (nothing else appends meanwhile).
    local waited lag
    waited=$(wait_indexed 60) || say "  (e) warning: the indexer had not caught up after ${waited} s"
    after=$(annals_stats) || die "cannot read Annals statistics"
    local b l a
    read -r -a b <<<"$before"
    read -r -a l <<<"$after_load"
    read -r -a a <<<"$after"
    lag=$((l[6] - l[5]))
    SYNC_COMMITS=$((l[0] - b[0])) SYNC_APPENDS=$((l[1] - b[1])) SYNC_LOG=$((l[2] - b[2]))
    SYNC_INDEX=$((a[4] - b[4]))
    local dss dis dix
    dss=$(awk -v x="${l[3]}" -v y="${b[3]}" 'BEGIN { printf "%.6f", x - y }')
    dis=$(awk -v x="${a[7]}" -v y="${b[7]}" 'BEGIN { printf "%.6f", x - y }')
    dix=$((a[5] - b[5]))
    read -r SYNC_PER LOG_PER INDEX_PER GROUP SYNC_MS INDEX_EVS INDEX_MS < <(awk -v c="$SYNC_COMMITS" \
        -v a="$SYNC_APPENDS" -v s="$SYNC_LOG" -v i="$SYNC_INDEX" -v ss="$dss" -v is="$dis" -v ix="$dix" 'BEGIN {
        if (a) printf "%.4f %.4f %.4f ", (s + i) / a, s / a, i / a; else printf "- - - "
        if (c) printf "%.1f ", a / c; else printf "- "
        if (s) printf "%.3f ", ss * 1000 / s; else printf "- "
        if (i) printf "%.0f %.2f\n", ix / i, is * 1000 / i; else printf "- -\n" }')
    INDEX_LAG=$lag INDEX_WAIT=${waited:-?}
    if [ "$lag" -gt 0 ]; then
        INDEX_CATCHUP="$lag events not yet indexed when the load stopped, caught up within $INDEX_WAIT s"
    else
        INDEX_CATCHUP="the index was up to date when the load stopped"
    fi
    say "  (e) during (a): $SYNC_APPENDS acknowledged appends in $SYNC_COMMITS group commits (group-commit factor $GROUP appends/commit)"
    say "      log fdatasyncs:   $SYNC_LOG = $LOG_PER per append, average $SYNC_MS ms each"
    say "      index commits:    $SYNC_INDEX = $INDEX_PER per append ($INDEX_EVS events and $INDEX_MS ms per index transaction;"
    say "                        $INDEX_CATCHUP)"
    say "      syncs per acknowledged append (log + index) $SYNC_PER   [target < 0.1]"
    STRACE_LINE=""
    if [ "${BENCH_STRACE:-1}" != 0 ] && command -v strace >/dev/null; then
        strace_confirm
    fi

    # The same workload as (a), driven by wrk with a Lua script per request (the load generator
    # of earlier figures): the difference is the client's own CPU, taken from the server.
    run_wrk annals_distinct_wrk "(a') as (a), load from wrk + Lua" 1 append_distinct.lua
    run_load_median annals_one "(b) 1-event appends, one stream" 1 "${JSON[@]}" \
        -b "{\"events\":[$EVENT],\"expectedVersion\":\"any\"}" "$STREAMS/bench-one/events"
    run_load annals_batch "(c) $BATCH-event batches, distinct streams" "$BATCH" "${JSON[@]}" \
        -b "$(batch_body "$BATCH")" "$STREAMS/b-{p}-{m}/events"

    # A stream of exactly 100 events to read.
    python3 -c "
import json
print(json.dumps({'events': [{'type': 'bench.appended', 'data': {'n': i, 'text': 'hello world'}} for i in range(1, 101)]}))" \
        >"$TMP/read-body.json"
    curl -sf -X POST -H 'Content-Type: application/json' --data-binary @"$TMP/read-body.json" \
        "http://127.0.0.1:$APORT/v1/databases/default/streams/bench-read/events" >/dev/null ||
        die "could not create the stream to read"
    run_load annals_read "(d) read 100-event stream (limit=100)" 100 "$STREAMS/bench-read/events?limit=100"
    # (f): one stream-less event per request, tagged with a key no other request uses, and the
    # condition that no event of its type carries that tag yet (so every condition holds).
    run_load annals_cond "(f) conditional appends (DCB, one tag each)" 1 "${JSON[@]}" \
        -b '{"events":[{"type":"bench.reserved","data":{"n":{n}},"tags":["key:c-{p}-{n}"]}],"condition":{"failIfEventsMatch":{"items":[{"types":["bench.reserved"],"tags":["key:c-{p}-{n}"]}]}}}' \
        /v1/databases/default/events
    run_load annals_keyed "(h) 1-event appends, each with a new Idempotency-Key" 1 "${JSON[@]}" \
        -H 'Idempotency-Key: k-{p}-{n}' -b "{\"events\":[$EVENT]}" "$STREAMS/h-{p}-{m}/events"
    # (i): (a) through the DeltaBase dialect (its rate limit off), and (a) again right after,
    # so the two are measured on the same store at the same moment
    run_load_median annals_dlb "(i) 1-event appends through the DeltaBase dialect" 1 "${JSON[@]}" \
        -b "{\"events\":[$EVENT]}" "/deltabase/event-stores/default/streams/i-{p}-{m}"
    run_load_median annals_native_i "(i') (a) again, next to (i)" 1 "${JSON[@]}" \
        -b "{\"events\":[$EVENT]}" "$STREAMS/j-{p}-{m}/events"

    # (j): (a) with ?returnState=true and a Lua reducer bound to the streams' category, then
    # (j') (a) right after: the cost of computing and returning the state with each append
    deploy_component bench_reducer '{"kind":"reducer","language":"lua","category":"rs","source":"function reduce(s, e) s = s or {n = 0, total = 0} s.n = s.n + 1 s.total = s.total + e.data.n return s end"}'
    run_load_median annals_state_append "(j) 1-event appends returning a Lua reducer's state" 1 \
        "${JSON[@]}" -b "{\"events\":[$EVENT]}" "$STREAMS/rs-{p}-{m}/events?returnState=true"
    run_load_median annals_native_j "(j') (a) again, next to (j)" 1 "${JSON[@]}" \
        -b "{\"events\":[$EVENT]}" "$STREAMS/k-{p}-{m}/events"
    # (k): the state of a 100-event stream (served from its snapshot after the first read)
    curl -sf -X POST -H 'Content-Type: application/json' --data-binary @"$TMP/read-body.json" \
        "http://127.0.0.1:$APORT/v1/databases/default/streams/rs-read/events" >/dev/null ||
        die "could not create the stream whose state is read"
    run_load annals_state_get "(k) state of a 100-event stream (Lua reducer, snapshot)" 1 \
        "$STREAMS/rs-read/state"
    bench_evidentsource
    bench_hapnd
    bench_j17
    bench_deql

    ANNALS_RSS_END=$(rss_kb "$APID")
    stop_pid "$APID"
    APID=""
    if grep -q '"level":"error"' "$TMP/annals.log"; then
        say "  server errors logged:"
        grep '"level":"error"' "$TMP/annals.log" | head -5 | sed 's/^/    /'
    fi
}

# ---------------------------------------------------------------- EvidentSource dialect
ES=/evidentsource/databases/default
CE='{"specversion":"1.0","id":"{p}-{n}","source":"svc-{p}-{m}","type":"bench.appended","data":{"n":1,"text":"hello world"}}'
ce_batch() { # N: N CloudEvents in one append (ids unique per request and event)
    local i sep="" out='{"events":['
    for i in $(seq 1 "$1"); do
        out="$out$sep{\"specversion\":\"1.0\",\"id\":\"{p}-{n}-$i\",\"source\":\"batch-{p}-{m}\",\"type\":\"bench.appended\",\"data\":{\"n\":$i,\"text\":\"hello world\"}}"
        sep=,
    done
    printf '%s]}' "$out"
}
# es_fill SOURCE N: appends N CloudEvents of SOURCE in batches of 100 through the dialect.
es_fill() {
    local src=$1 n=$2 i j body sep
    for ((i = 0; i < n; i += 100)); do
        body='{"events":['
        sep=""
        for ((j = i; j < i + 100 && j < n; j++)); do
            body="$body$sep{\"specversion\":\"1.0\",\"id\":\"$src-$j\",\"source\":\"$src\",\"type\":\"bench.counted\",\"data\":{\"n\":$j}}"
            sep=,
        done
        curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -d "$body]}" \
            "http://127.0.0.1:$APORT$ES/events" || die "could not append CloudEvents of $src"
    done
}

# (l) CloudEvents appends through the EvidentSource dialect, next to native appends (l');
# (m) 100-CloudEvent appends; (n) a selector query returning 100 events; (o) a state view
# folding 1,000 events: its first read (one request, no cached result) and repeated reads.
bench_evidentsource() {
    run_load_median annals_es "(l) 1-CloudEvent appends through the EvidentSource dialect" 1 \
        "${JSON[@]}" -b "{\"events\":[$CE]}" "$ES/events"
    run_load_median annals_native_l "(l') (a) again, next to (l)" 1 "${JSON[@]}" \
        -b "{\"events\":[$EVENT]}" "$STREAMS/l-{p}-{m}/events"
    ce_batch 100 >"$TMP/ce-batch.json"
    run_load annals_es_batch "(m) 100-CloudEvent appends (EvidentSource)" 100 "${JSON[@]}" \
        -b "$(cat "$TMP/ce-batch.json")" "$ES/events"
    es_fill es-read 100
    run_load annals_es_query "(n) EvidentSource selector query, 100 events" 100 "${JSON[@]}" \
        -b '{"selectors":[{"source":"es-read","event_type":"bench.counted"}],"limit":100}' \
        "$ES/query"
    es_fill es-view 1000
    printf 'function evolve(s, e, p)\n  s = s or {count = 0, total = 0}\n  s.count = s.count + 1\n  s.total = s.total + e.data.n\n  return s\nend\n' >"$TMP/view.lua"
    curl -sf -o /dev/null -X POST \
        -F 'metadata={"state_view_name":"bench-counter","content_type":"application/json","event_selector":{"type":"equals","attr":{"stream":"es-view"}},"query_temporality":"revision"};type=application/json' \
        -F "source=@$TMP/view.lua;type=text/x-lua" \
        "http://127.0.0.1:$APORT/evidentsource/api/v1/db/default/state-views" ||
        { say "  (o) skipped: the state view could not be published"; return; }
    ES_VIEW_FIRST=$(curl -sf -o /dev/null -w '%{time_total}' "http://127.0.0.1:$APORT$ES/state-views/bench-counter") ||
        ES_VIEW_FIRST=""
    say "  (o) first read of a state view over 1,000 events: ${ES_VIEW_FIRST:-failed} s"
    run_load annals_es_view "(o) state view over 1,000 events, repeated reads" 1 \
        "$ES/state-views/bench-counter"
}

# ---------------------------------------------------------------- Hapnd dialect
HD=/hapnd
# hapnd_zip FILE NAME SOURCE: writes a zip holding one file NAME with SOURCE.
hapnd_zip() {
    python3 -c 'import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z: z.writestr(sys.argv[2], sys.argv[3])' "$1" "$2" "$3"
}
# hapnd_upload KIND ZIP: uploads ZIP to /hapnd/KIND/upload, waits until it compiled; prints
# the status answer.
hapnd_upload() {
    local up id st i
    up=$(curl -sf -F "file=@$2" "http://127.0.0.1:$APORT$HD/$1/upload") || return 1
    id=$(python3 -c 'import json, sys; b = json.loads(sys.argv[1]); print(b.get("reducerId") or b.get("uploadId"))' "$up")
    for i in $(seq 1 600); do
        st=$(curl -sf "http://127.0.0.1:$APORT$HD/$1/$id/status")
        case $st in *'"status":"compiled"'*) echo "$st"; return 0 ;; *'"status":"failed"'*) return 1 ;; esac
        sleep 0.05
    done
    return 1
}
HD_EVENT='{"aggregateId":"hb_{p}-{m}","eventType":"bench.appended","data":{"n":1,"text":"hello world"}}'
bench_hapnd() {
    hapnd_zip "$TMP/hb.zip" HbReducer.lua 'kind = "reducer"
aggregateType = "hb"
function apply(s, e) s = s or {n = 0, total = 0} s.n = s.n + 1 s.total = s.total + e.data.n return s end' &&
        hapnd_upload reducers "$TMP/hb.zip" >/dev/null ||
        { say "  (p) skipped: the Hapnd reducer could not be uploaded"; return; }
    run_load_median annals_hapnd "(p) Hapnd single-event appends, a Lua reducer's state in each 201" 1 \
        "${JSON[@]}" -b "$HD_EVENT" "$HD/events"
    run_load_median annals_native_p "(p') (a) again, next to (p)" 1 "${JSON[@]}" \
        -b "{\"events\":[$EVENT]}" "$STREAMS/p-{p}-{m}/events"
    python3 -c 'import json
print(json.dumps({"aggregateId": "hb_read", "events": [{"eventType": "bench.appended", "data": {"n": 1}} for _ in range(100)]}))' >"$TMP/hb-read.json"
    curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary @"$TMP/hb-read.json" \
        "http://127.0.0.1:$APORT$HD/events/batch" || { say "  (q) skipped: no aggregate"; return; }
    run_load annals_hapnd_state "(q) Hapnd state of a 100-event aggregate (Lua reducer, snapshot)" 1 \
        "$HD/aggregate-types/hb/hb_read/state"
}

# ---------------------------------------------------------------- j17 dialect
J17_UUID=550e8400-e29b-41d4-a716-446655440000
J17_SPEC='{"environment":"prod","spec":{"agent_types":["user"],"aggregate_types":{
 "acct":{"events":{"was_credited":{
   "schema":{"type":"object","required":["amount"],"properties":{"amount":{"type":"number","minimum":0},"note":{"type":"string","maxLength":200}}},
   "handler":[{"increment":{"target":"balance","by":"$.data.amount"}},{"set":{"target":"last_note","value":"$.data.note"}}],
   "implications":[{"emit":{"aggregate_type":"ledger","id":"$.id","event_type":"entry_added","data":{"amount":"$.data.amount","account":"$.key"}}}]}}},
 "ledger":{"events":{"entry_added":{"schema":{"type":"object"},"handler":[{"increment":{"target":"entries"}}]}}}}}}'
J17_EVENT="{\"data\":{\"amount\":5,\"note\":\"hello world\"},\"metadata\":{\"actor\":{\"type\":\"user\",\"id\":\"$J17_UUID\"}}}"
bench_j17() {
    curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -d "$J17_SPEC" \
        "http://127.0.0.1:$APORT/j17/api/instances/default/spec" ||
        { say "  (r) skipped: the j17 spec could not be deployed"; return; }
    run_load_median annals_j17 "(r) j17 writes: JSON Schema, a Tick handler, one implication" 1 \
        "${JSON[@]}" -b "$J17_EVENT" "/j17/acct/$J17_UUID:{p}-{m}/was_credited"
    run_load_median annals_native_r "(r') (a) again, next to (r)" 1 "${JSON[@]}" \
        -b "{\"events\":[$EVENT]}" "$STREAMS/r-{p}-{m}/events"
    python3 -c 'import json, sys
print(json.dumps({"events": [{"type": "was_credited", "data": {"amount": 1, "note": "n"}} for _ in range(100)],
                  "metadata": {"actor": {"type": "user", "id": sys.argv[1]}}}))' "$J17_UUID" >"$TMP/j17-read.json"
    curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary @"$TMP/j17-read.json" \
        "http://127.0.0.1:$APORT/j17/acct/$J17_UUID:read" || { say "  (s) skipped: no aggregate"; return; }
    run_load annals_j17_state "(s) j17 state of a 100-event aggregate (Tick reducer)" 1 \
        "/j17/acct/$J17_UUID:read"
    run_load annals_j17_sync "(s') the same with ?synchronous=true" 1 \
        "/j17/acct/$J17_UUID:read?synchronous=true"
}

# ---------------------------------------------------------------- DeQL dialect
# Definitions are registered through POST /deql/api/deql/create; EXECUTE and the reads answer
# Arrow IPC. The events the DeQL tables read are those tagged "deql:<Agg>" in streams
# "<Agg>-<id>" (the aggregate's fields in data), so the reads are filled through the native API.
DQ=/deql/api
DQ_ACCOUNT='CREATE AGGREGATE Account;
CREATE COMMAND Deposit (account_id STRING, amount INT);
CREATE EVENT Deposited (amount INT, balance INT);
CREATE DECISION DoDeposit FOR Account ON COMMAND Deposit
  STATE AS SELECT COALESCE(SUM(amount), 0) AS balance FROM DeReg."Account$Events" WHERE stream_id = :account_id
  EMIT AS SELECT EVENT Deposited (amount := :amount, balance := balance + :amount) WHERE :amount > 0;'
DQ_READING='CREATE AGGREGATE Reading (value INT);
CREATE PROJECTION ByDevice AS SELECT stream_id, COUNT(*) AS n, SUM(value) AS total,
  LAST(value, event_id) AS latest FROM DeReg."Reading$Events" GROUP BY stream_id;'
DQ_EXEC='{"params":{"account_id":"acct-{p}-{m}","amount":5}}'
DQ_LINE=""         # the group-commit note of (t), for the report
DQ_SCAN_LINE=""    # (v), for the report

# dq_create SCRIPT: registers DeQL definitions on the Annals under test; on failure prints why
# and returns 1.
dq_create() {
    local body st
    body=$(python3 -c 'import json, sys; print(json.dumps({"deql": sys.argv[1]}))' "$1")
    st=$(curl -s -o "$TMP/deql-create.out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        -d "$body" "http://127.0.0.1:$APORT$DQ/deql/create")
    [ "$st" = 200 ] && return 0
    echo "POST $DQ/deql/create answered ${st:-nothing}: $(head -c 300 "$TMP/deql-create.out")"
    return 1
}

# dq_fill AGG PREFIX COUNT N: N events per stream, tagged deql:AGG, into the COUNT streams
# AGG-PREFIX0 .. AGG-PREFIX<COUNT-1> (curl's URL range, 4 requests in flight, one append each)
# through the native API; data {"amount": 1, "balance": i, "value": i % 100}. Returns 1 unless
# every append answered 201.
dq_fill() {
    local agg=$1 prefix=$2 count=$3 n=$4 body=$TMP/deql-fill-$1.json ok
    python3 -c 'import json, sys
agg, n = sys.argv[1], int(sys.argv[2])
print(json.dumps({"events": [{"type": agg + "Recorded", "data": {"amount": 1, "balance": i + 1, "value": i % 100},
                              "tags": ["deql:" + agg]} for i in range(n)]}, separators=(",", ":")))' "$agg" "$n" >"$body"
    ok=$(curl -s --no-progress-meter -o /dev/null --parallel --parallel-max 4 -w '%{http_code}\n' \
        -X POST -H 'Content-Type: application/json' --data-binary @"$body" \
        "http://127.0.0.1:$APORT$STREAMS/$agg-$prefix[0-$((count - 1))]/events" 2>>"$TMP/deql-fill.err" |
        grep -c '^201$')
    [ "$ok" = "$count" ]
}

# (t) EXECUTE of a decision with a STATE AS (a SUM over the command's stream) and a guard, each
# request to its own stream (acct-{p}-{m}: a fresh set per run, a few events each, never two
# requests in flight on one stream, so no append condition fails), then (t') native appends
# right after; (u) the $Agg state GET of a 100-event stream.
bench_deql() {
    local why
    why=$(dq_create "$DQ_ACCOUNT") || { say "  (t) (u) skipped: the DeQL definitions could not be registered: $why"; return 0; }
    local before after
    before=$(annals_stats)
    run_load_median annals_deql "(t) DeQL EXECUTE (STATE AS + guard), distinct streams" 1 \
        "${JSON[@]}" -b "$DQ_EXEC" "$DQ/aggregates/Account/execute/Deposit"
    after=$(annals_stats)
    local b a group=""
    read -r -a b <<<"$before"
    read -r -a a <<<"$after"
    [ ${#a[@]} -ge 2 ] && [ ${#b[@]} -ge 2 ] && [ $((a[0] - b[0])) -gt 0 ] &&
        group=$(awk -v c=$((a[0] - b[0])) -v n=$((a[1] - b[1])) 'BEGIN { printf "%.2f", n / c }')
    DQ_LINE="(t) group-commit factor ${group:-?} appends/commit (each SQL worker waits for its append to be durable; $GROUP in (a))"
    say "    $DQ_LINE"
    run_load_median annals_native_t "(t') (a) again, next to (t)" 1 "${JSON[@]}" \
        -b "{\"events\":[$EVENT]}" "$STREAMS/t-{p}-{m}/events"
    dq_fill Account read- 4 100 || { say "  (u) skipped: the 100-event streams could not be appended"; return 0; }
    # The state must hold the 100 events (the $Agg view: the newest balance is 100).
    local st check
    st=$(curl -s -o "$TMP/deql-get.out" -w '%{http_code} %{content_type}' "http://127.0.0.1:$APORT$DQ/aggregates/Account/read-0")
    check=$(curl -s -X POST -H 'Content-Type: application/json' -H 'Accept: application/json' \
        -d '{"deql":"SELECT balance FROM DeReg.\"Account$Agg\" WHERE aggregate_id = '"'read-0'"'"}' \
        "http://127.0.0.1:$APORT$DQ/deql/run")
    case "$st|$check" in
        "200 application/vnd.apache.arrow.stream"*'"rows":[[100]]'*) ;;
        *) say "  (u) skipped: GET $DQ/aggregates/Account/read-0 answered $st: $(head -c 200 "$TMP/deql-get.out"); the state: $check"; return 0 ;;
    esac
    run_load annals_deql_get "(u) DeQL state GET of a 100-event aggregate" 1 -m 4 \
        "$DQ/aggregates/Account/read-{m}"
}

# (v) a GROUP BY projection over BENCH_DEQL_EVENTS events (default 1M: 1,000 streams
# Reading-<n> of 1,000 events, appended through the native API in 1,000-event batches), one
# GET .../projections/ByDevice/query at a time: the first, then BENCH_DEQL_QUERIES more (default
# 5), median latency and events scanned per second. The server runs with --deql-workers 32, and
# (t*) repeats (t) on it first: the SQL workers wait for each append to be durable, so their count
# bounds EXECUTE. When the query runs past the SQL step budget it is run again on a server with
# --deql-sql-steps raised, and the report says so.
bench_deql_scan() {
    local n=${BENCH_DEQL_EVENTS:-1000000} q=${BENCH_DEQL_QUERIES:-5} workers=32 streams why
    streams=$(((n + 999) / 1000))
    [ "$q" -ge 1 ] 2>/dev/null || q=1
    say ""
    say "== 3d. DeQL: EXECUTE with --deql-workers $workers, then a GROUP BY projection over $(fmt_int "$((streams * 1000))") events"
    if ! "$ANNALS" serve --help 2>&1 | grep -q -- '--deql-sql-steps'; then
        say "  (t*) (v) skipped: this Annals has no --deql-workers / --deql-sql-steps"
        DQ_SCAN_LINE="skipped (no DeQL server flags)"
        return 0
    fi
    start_annals "$TMP/deql" --deql-workers "$workers"
    if ! why=$(dq_create "$DQ_ACCOUNT
$DQ_READING"); then
        say "  (t*) (v) skipped: the DeQL definitions could not be registered: $why"
        DQ_SCAN_LINE="skipped (definitions refused)"
        stop_pid "$APID"
        APID=""
        return 0
    fi
    LABEL[annals_deql_w]="Annals (t*) DeQL EXECUTE as (t), --deql-workers $workers"
    run_load annals_deql_w "(t*) DeQL EXECUTE as (t), --deql-workers $workers" 1 "${JSON[@]}" \
        -b "$DQ_EXEC" "$DQ/aggregates/Account/execute/Deposit"
    local t0 t1 fill
    t0=$(date +%s.%N)
    if ! dq_fill Reading "" "$streams" 1000; then
        say "  (v) skipped: appending the readings failed"
        DQ_SCAN_LINE="skipped (fill failed)"
        stop_pid "$APID"
        APID=""
        return 0
    fi
    t1=$(date +%s.%N)
    fill=$(awk -v a="$t0" -v b="$t1" -v n="$((streams * 1000))" 'BEGIN { printf "%.1f s (%.0f events/s)", b - a, n / (b - a) }')
    wait_indexed 120 >/dev/null
    say "  filled $(fmt_int "$((streams * 1000))") events in $streams streams through the native API in $fill"
    local steps_note="default SQL step budget" st i times=() first="" out=$TMP/deql-proj.out url
    url="http://127.0.0.1:$APORT$DQ/projections/ByDevice/query?limit=$streams"
    st=$(curl -s -o "$out" -w '%{http_code} %{time_total}' "$url")
    if [ "${st%% *}" != 200 ] && grep -q 'step budget' "$out"; then
        local steps=10000000
        say "  (v) the query ran past the default SQL step budget ($(head -c 200 "$out")):"
        say "      restarting the server with --deql-sql-steps $steps"
        steps_note="needs --deql-sql-steps $steps: the default step budget is too small"
        stop_pid "$APID"
        APID=""
        start_annals "$TMP/deql" --deql-workers "$workers" --deql-sql-steps "$steps"
        url="http://127.0.0.1:$APORT$DQ/projections/ByDevice/query?limit=$streams"
        st=$(curl -s -o "$out" -w '%{http_code} %{time_total}' "$url")
    fi
    if [ "${st%% *}" != 200 ]; then
        say "  (v) skipped: the projection query answered ${st%% *}: $(head -c 300 "$out")"
        DQ_SCAN_LINE="skipped (query answered ${st%% *})"
        stop_pid "$APID"
        APID=""
        rm -rf "$TMP/deql"
        return 0
    fi
    first=${st#* }
    local errs=0
    for i in $(seq 1 "$q"); do
        st=$(curl -s -o "$out" -w '%{http_code} %{time_total}' "$url")
        [ "${st%% *}" = 200 ] || errs=$((errs + 1))
        times+=("${st#* }")
    done
    # The answer checked once: a row per stream, every event counted.
    local check
    check=$(curl -s -X POST -H 'Content-Type: application/json' -H 'Accept: application/json' \
        -d '{"deql":"SELECT COUNT(*), SUM(n) FROM DeReg.\"ByDevice\""}' "http://127.0.0.1:$APORT$DQ/deql/run" |
        python3 -c 'import json, sys
try: print(*json.load(sys.stdin)["results"][0]["rows"][0], sep=" rows, ", end=" events\n")
except Exception: print("no answer")')
    local med p_max rss anon logm idxm
    read -r med p_max < <(printf '%s\n' "${times[@]}" | sort -n |
        awk '{ v[NR] = $1 } END { printf "%.1f %.1f\n", v[int((NR + 1) / 2)] * 1000, v[NR] * 1000 }')
    read -r rss anon logm idxm < <(mem_sample "$APID")
    local evs rps
    rps=$(awk -v m="$med" 'BEGIN { printf "%.2f", 1000 / m }')
    evs=$(awk -v m="$med" -v n="$((streams * 1000))" 'BEGIN { printf "%.0f", n / (m / 1000) }')
    DQ_SCAN_LINE="GROUP BY over $(fmt_int "$((streams * 1000))") events: first query $(awk -v f="$first" 'BEGIN { printf "%.0f", f * 1000 }') ms, then median $med ms of $q (max $p_max ms) = $(fmt_int "$evs") events scanned/s; $steps_note; check: $check"
    LABEL[annals_deql_scan]="Annals (v) DeQL GROUP BY over $(fmt_int "$((streams * 1000))") events (events/s scanned)"
    record annals_deql_scan "$rps" "$evs" "$med" "$p_max" "$errs" "$rss" "$anon" \
        "one request at a time, $q after a first; p50 = median, p99 = max; $steps_note; check: $check; filled in $fill"
    say "  (v) $DQ_SCAN_LINE"
    say "    memory: VmRSS $(mib "$rss") MiB = anon $(mib "$anon") + event log mapping $(mib "$logm") + index mapping $(mib "$idxm") + other"
    stop_pid "$APID"
    APID=""
    rm -rf "$TMP/deql"
}

# deploy_component NAME JSON: deploys user code to the default database of the Annals under test.
deploy_component() {
    curl -sf -o /dev/null -X PUT -H 'Content-Type: application/json' -d "$2" \
        "http://127.0.0.1:$APORT/v1/databases/default/components/$1" ||
        die "could not deploy component $1"
}

# ---------------------------------------------------------------- projections
# A Lua projection (one state per stream: a count and the newest position) deployed over
# BENCH_PROJ_EVENTS events (default 1M, loaded in process by bench/load_events): the time from
# the deploy until it reports live with no lag, as events applied per second.
PROJ_LINE=""
PROJ_LINE_JS=""
PROJ_LINE_HAPND=""
# proj_catchup NAME EVENTS TARGET JSON: deploys the projection JSON as NAME on the Annals under
# test, waits until it reports live with no lag, and prints its catch-up rate.
proj_catchup() {
    local name=$1 n=$2 target=$3 t0 t1 st i
    t0=$(date +%s.%N)
    case $4 in
        hapnd:*) hapnd_upload projections "${4#hapnd:}" >/dev/null || { echo "upload failed"; return; } ;;
        *) deploy_component "$name" "$4" ;;
    esac
    for i in $(seq 1 36000); do
        st=$(curl -sf "http://127.0.0.1:$APORT/v1/databases/default/projections/$name")
        case $st in *'"status":"live"'*'"lag":0'*|*'"status":"failed"'*) break ;; esac
        sleep 0.05
    done
    t1=$(date +%s.%N)
    python3 -c '
import json, sys
s = json.loads(sys.argv[1]); secs = float(sys.argv[3]) - float(sys.argv[2]); n = int(sys.argv[4])
print("%s after %.1f s: %d events applied, %.0f events/s, %d state changes%s" % (
      s["status"], secs, n, n / secs if secs > 0 else 0, s["sequence"],
      " [target >= %s events/s]" % sys.argv[5] if sys.argv[5] else ""))' "$st" "$t0" "$t1" "$n" "$target"
}

bench_projection() {
    local n=${BENCH_PROJ_EVENTS:-1000000} out
    say ""
    say "== 3b. Projection catch-up over $(fmt_int "$n") events: Lua, then JavaScript"
    out=$("$LOADER" "$TMP/proj" "$n" 2>>"$TMP/load.log") || die "loading $n events failed"
    start_annals "$TMP/proj"
    PROJ_LINE=$(proj_catchup bench_proj "$n" 200,000 '{"kind":"projection","language":"lua","source":"function key(e) return e.stream end\nfunction apply(s, e) s = s or {n = 0} s.n = s.n + 1 s.last = e.position return s end"}')
    say "  Lua: $PROJ_LINE"
    # the same projection in JavaScript, on the same events
    PROJ_LINE_JS=""
    if [ -x "$(dirname "$ANNALS")/annals-jsworker" ]; then
        PROJ_LINE_JS=$(proj_catchup bench_proj_js "$n" 100,000 '{"kind":"projection","language":"javascript","source":"export function key(e) { return e.stream; }\nexport function apply(s, e) { s = s ?? {n: 0}; s.n += 1; s.last = e.position; return s; }"}')
        say "  JavaScript: $PROJ_LINE_JS"
    fi
    # the Lua projection again, uploaded through the Hapnd dialect (it sees Hapnd's event shape)
    hapnd_zip "$TMP/hp.zip" BenchProj.lua 'function resolveKey(e) return e.aggregateId end
function apply(s, e) s = s or {n = 0} s.n = s.n + 1 s.last = e.position return s end'
    PROJ_LINE_HAPND=$(proj_catchup hapnd.p.BenchProj "$n" "" "hapnd:$TMP/hp.zip")
    say "  Hapnd (Lua, uploaded as a zip): $PROJ_LINE_HAPND"
    stop_pid "$APID"
    APID=""
    rm -rf "$TMP/proj"
}

# ---------------------------------------------------------------- queries
# A query returning 100 events of a rare type (1 event in 10,000) with QUERY_SMALL and then
# QUERY_BIG events stored: the figures should be close (the type index reads only the rare
# events). The events are loaded in process (bench/load_events, no HTTP), then served.
bench_query() {
    local small=${BENCH_QUERY_SMALL:-1000000} big=${BENCH_QUERY_BIG:-10000000} n key out
    say ""
    say "== 3. Queries: 100 events of a rare type (1 in 10,000), ${SECS} s per run, $CONNS connections"
    for n in "$small" "$big"; do
        out=$("$LOADER" "$TMP/query" "$n" 2>>"$TMP/load.log") || die "loading $n events failed"
        say "  load: $out"
        key=annals_query_$n
        LABEL[$key]="Annals (g) query, rare type, $(fmt_int "$n") events stored (events/s = 100 per request)"
        start_annals "$TMP/query"
        run_load "$key" "(g) query rare type at $(fmt_int "$n") events" 100 \
            "/v1/databases/default/events?types=bench.rare&limit=100&direction=backward"
        stop_pid "$APID"
        APID=""
    done
    rm -rf "$TMP/query"
}

# ---------------------------------------------------------------- compaction
# BENCH_COMPACT_EVENTS (default 1M) events loaded in process over 1,000 streams, half the
# streams soft-deleted, then one compaction (POST .../compaction): its duration, the log bytes
# it read and reclaimed, and the server's own memory (RssAnon) before, at the peak and after.
COMPACT_LINE=""
bench_compact() {
    local n=${BENCH_COMPACT_EVENTS:-1000000} i out
    say ""
    say "== 3c. Compaction: $(fmt_int "$n") events over 1,000 streams, half the streams deleted"
    out=$("$LOADER" "$TMP/compact" "$n" 2>>"$TMP/load.log") || die "loading $n events failed"
    start_annals "$TMP/compact"
    for i in $(seq 0 2 999); do
        curl -sf -o /dev/null -X DELETE "http://127.0.0.1:$APORT/v1/databases/default/streams/load-$i"
    done
    sleep 1 # the deletes are indexed
    local a0 peak a t0 t1 st=""
    a0=$(mem_sample "$APID" | awk '{print $2}')
    peak=$a0
    t0=$(date +%s.%N)
    curl -sf -o /dev/null -X POST "http://127.0.0.1:$APORT/v1/databases/default/compaction"
    for i in $(seq 1 6000); do
        a=$(mem_sample "$APID" | awk '{print $2}')
        [ "$a" -gt "$peak" ] && peak=$a
        st=$(curl -sf "http://127.0.0.1:$APORT/v1/databases/default/compaction")
        case $st in *'"checks":1'*'"running":false'*|*'"running":false'*'"checks":1'*) break ;; esac
        sleep 0.05
    done
    t1=$(date +%s.%N)
    a=$(mem_sample "$APID" | awk '{print $2}')
    stop_pid "$APID"
    APID=""
    rm -rf "$TMP/compact"
    COMPACT_LINE=$(python3 -c '
import json, sys
c = json.loads(sys.argv[1])["compaction"]["last"] or {}
secs = float(sys.argv[3]) - float(sys.argv[2])
mb = lambda b: b / 1e6
print("%s: %.2f s, %.0f MB of log read (%.0f MB/s), %d events redacted, %.1f MB reclaimed; "
      "server RssAnon %.1f MiB before, %.1f at the peak, %.1f after" % (
      c.get("outcome"), secs, mb(c.get("logBytesBefore", 0)),
      mb(c.get("logBytesBefore", 0)) / secs if secs > 0 else 0, c.get("redactedEvents", 0),
      mb(c.get("reclaimedBytes", 0)), int(sys.argv[4]) / 1024, int(sys.argv[5]) / 1024,
      int(sys.argv[6]) / 1024))' "$st" "$t0" "$t1" "$a0" "$peak" "$a")
    say "  $COMPACT_LINE"
}

# ---------------------------------------------------------------- live fan-out
# BENCH_FANOUT_SUBS SSE subscribers (default 1000) on one database, single-event appends at
# BENCH_FANOUT_RATE per second (default 200, one at a time over one connection: the rate is
# what the server sustains when it cannot keep up); latency from each event's commit time
# ("recorded") to its receipt by each subscriber; server memory after the run.
FANOUT_LINE=""
FANOUT_MEM=""
bench_fanout() {
    local subs=${BENCH_FANOUT_SUBS:-1000} rate=${BENCH_FANOUT_RATE:-200}
    say ""
    say "== 4. Live fan-out: $subs SSE subscribers, single-event appends at up to $rate/s, ${SECS} s"
    start_annals "$TMP/fanout"
    FANOUT_LINE=$("$FANOUT" "$APORT" "$subs" "$rate" "$SECS" 2>>"$TMP/fanout.log") ||
        die "the fan-out benchmark failed: $(tail -1 "$TMP/fanout.log")"
    FANOUT_MEM="server VmRSS $(mib "$(rss_kb "$APID")") MiB, RssAnon $(mib "$(mem_sample "$APID" | awk '{print $2}')") MiB"
    stop_pid "$APID"
    APID=""
    say "  $FANOUT_LINE"
    say "  $FANOUT_MEM"
}

# ---------------------------------------------------------------- commit ceiling
ceiling_at_64() { # events/s of the 64-appender (or 64-batch) line of the tool's output
    awk '/events\/s/ && ($1 == "64" || $2 == "64:") {
        for (i = 2; i <= NF; i++) if ($i == "events/s") { print $(i - 1); exit } }' "$1"
}
bench_ceiling() {
    say ""
    say "== 2. In-process group-commit ceiling of the store (append-only log, one fdatasync per batch; LMDB index in the background; no HTTP; $CEIL_SECS s per case)"
    say "  distinct streams:"
    "$CEILING" "$TMP/ceiling" "$CEIL_SECS" 2>>"$TMP/ceiling.log" | tee "$TMP/ceiling-distinct.txt" |
        grep -v '^group-commit ceiling' | sed 's/^/  /' || die "commit ceiling tool failed"
    say "  one stream (ONE=1):"
    ONE=1 "$CEILING" "$TMP/ceiling" "$CEIL_SECS" 2>>"$TMP/ceiling.log" | tee "$TMP/ceiling-one.txt" |
        grep -v '^group-commit ceiling' | sed 's/^/  /' || die "commit ceiling tool failed"
    rm -rf "$TMP/ceiling"
    CEIL64=$(ceiling_at_64 "$TMP/ceiling-distinct.txt")
    CEIL64_ONE=$(ceiling_at_64 "$TMP/ceiling-one.txt")
}

# ---------------------------------------------------------------- Redis
# run_redis KEY LABEL KEYNAME : XADD single events at $CONNS connections for about $SECS s.
run_redis() {
    local key=$1 label=$2 stream=$3
    local args=(-h 127.0.0.1 -p "$RPORT" -c "$CONNS" -P 1 -r 100000 --csv)
    local cmd=(XADD "$stream" '*' type bench.appended data '{"n":1,"text":"hello world"}')
    # redis-benchmark runs a request count, not a duration: calibrate with a short run.
    local cal n
    cal=$(redis-benchmark "${args[@]}" -n 3000 "${cmd[@]}" 2>"$TMP/redis-$key.err" | tail -1 |
        awk -F, '{ gsub(/"/, "", $(NF-6)); print $(NF-6) }')
    n=$(awk -v r="${cal:-0}" -v s="$SECS" 'BEGIN { n = int(r * s); if (n < 3000) n = 3000; if (n > 5000000) n = 5000000; print n }')
    local len0 len1
    len0=$(redis-cli -p "$RPORT" XLEN "$stream" 2>/dev/null)
    local line
    line=$(redis-benchmark "${args[@]}" -n "$n" "${cmd[@]}" 2>>"$TMP/redis-$key.err" | tail -1)
    local rss anon logm idxm
    read -r rss anon logm idxm < <(mem_sample "$RPID")
    kill -0 "$RPID" 2>/dev/null || { cat "$TMP/redis/redis.log" >&2; RPID=""; die "Redis died during $label"; }
    local rps p50 p99
    rps=$(awk -F, '{ gsub(/"/, "", $(NF-6)); print $(NF-6) }' <<<"$line")
    p50=$(awk -F, '{ gsub(/"/, "", $(NF-3)); printf "%.2f", $(NF-3) }' <<<"$line")
    p99=$(awk -F, '{ gsub(/"/, "", $(NF-1)); printf "%.2f", $(NF-1) }' <<<"$line")
    local errs
    errs=$(grep -ci error "$TMP/redis-$key.err")
    local note="$n requests"
    if [ "$stream" = one ]; then
        len1=$(redis-cli -p "$RPORT" XLEN "$stream" 2>/dev/null)
        note="$note; XLEN grew by $((len1 - len0))"
        [ $((len1 - len0)) -ne "$n" ] && errs="$errs (XLEN grew by $((len1 - len0)), sent $n)"
    fi
    record "$key" "$rps" "$rps" "$p50" "$p99" "$errs" "$rss" "$anon" "$note"
    printf '  %-44s %10s req/s %12s events/s  p50 %7s ms  p99 %7s ms  errors %s  RSS %s MiB (anon %s)\n' \
        "$label" "$(fmt_int "$rps")" "$(fmt_int "$rps")" "$p50" "$p99" "$errs" "$(mib "$rss")" "$(mib "$anon")"
}

bench_redis() {
    say ""
    say "== 3. $(redis-server --version | awk '{print $1, $2, $3}') streams (appendonly yes, appendfsync always), redis-benchmark $CONNS connections"
    RPORT=$(free_port)
    mkdir -p "$TMP/redis"
    redis-server --bind 127.0.0.1 --port "$RPORT" --dir "$TMP/redis" --appendonly yes \
        --appendfsync always --save '' --daemonize no --logfile "$TMP/redis/redis.log" &
    RPID=$!
    local i
    for i in $(seq 1 100); do
        [ "$(redis-cli -p "$RPORT" PING 2>/dev/null)" = PONG ] && break
        kill -0 "$RPID" 2>/dev/null || break
        sleep 0.1
    done
    [ "$(redis-cli -p "$RPORT" PING 2>/dev/null)" = PONG ] || { cat "$TMP/redis/redis.log" >&2; RPID=""; die "Redis did not start"; }
    say "  server pid $RPID, port $RPORT"
    run_redis redis_distinct "XADD s:__rand_int__ (100,000 keys)" 's:__rand_int__'
    run_redis redis_one "XADD one key" one
    stop_pid "$RPID"
    RPID=""
}

# ---------------------------------------------------------------- PostgreSQL
pg_percentiles() { # log files... -> "p50 p99" in ms (pgbench -l: 3rd field = latency in us)
    cat "$@" 2>/dev/null | awk '$3 ~ /^[0-9]+$/ {print $3}' | sort -n |
        awk '{ v[NR] = $1 } END { if (NR == 0) { print "- -"; exit }
            i50 = int(NR * 0.50); if (i50 < 1) i50 = 1; i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
            printf "%.2f %.2f\n", v[i50] / 1000, v[i99] / 1000 }'
}

run_pgbench() { # KEY LABEL SCRIPT
    local key=$1 label=$2 script=$3
    local out="$TMP/pgbench-$key.txt"
    local ppid
    ppid=$(head -1 "$PGDATA/postmaster.pid")
    # Sample the memory of all PostgreSQL processes near the end of the run (the backends
    # exit when pgbench disconnects).
    (sleep "$(awk -v s="$SECS" 'BEGIN { print (s > 2 ? s - 1 : s / 2) }')"; pss_tree_kb "$ppid" >"$TMP/pss-$key") &
    BGPIDS+=($!)
    (cd "$TMP/pgbench" && pgbench -n -h 127.0.0.1 -p "$PGPORT" -U postgres -c "$CONNS" -j "$WRK_THREADS" \
        -T "$SECS" -P 5 -l --log-prefix="log-$key" -f "$BENCH_DIR/$script" postgres) >"$out" 2>&1
    local rc=$?
    wait "${BGPIDS[@]}" 2>/dev/null
    BGPIDS=()
    local tps avg n failed aborted
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | tail -1)
    avg=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$out" | tail -1)
    n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
    aborted=$(grep -c 'aborted' "$out")
    local p50 p99
    read -r p50 p99 < <(pg_percentiles "$TMP/pgbench/log-$key".*)
    local errs="${failed:-0}"
    [ "$aborted" -gt 0 ] && errs="$errs ($aborted clients aborted)"
    [ $rc -ne 0 ] && errs="$errs (pgbench exit $rc)"
    local pss
    pss=$(cat "$TMP/pss-$key" 2>/dev/null)
    record "$key" "${tps:-0}" "${tps:-0}" "$p50" "$p99" "$errs" "$pss" "-" "$n transactions, avg latency ${avg:-?} ms; memory = PSS of all postgres processes"
    printf '  %-44s %10s req/s %12s events/s  p50 %7s ms  p99 %7s ms  avg %s ms  failed %s  PSS %s MiB\n' \
        "$label" "$(fmt_int "${tps:-0}")" "$(fmt_int "${tps:-0}")" "$p50" "$p99" "${avg:-?}" "$errs" "$(mib "$pss")"
    [ "$aborted" -gt 0 ] && grep -m3 'aborted' "$out" | sed 's/^/    /'
    return 0
}

bench_postgres() {
    say ""
    say "== 4. PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') (fsync=on, synchronous_commit=on), pgbench $CONNS clients, -j $WRK_THREADS"
    if [ "$(id -u)" = 0 ]; then
        if id postgres >/dev/null 2>&1; then
            PGUSER_OS=postgres
        else
            id annalsbench >/dev/null 2>&1 || useradd -r -M -s /usr/sbin/nologin annalsbench ||
                die "cannot create user annalsbench"
            PGUSER_OS=annalsbench
        fi
    else
        PGUSER_OS=$(id -un)
    fi
    PGPORT=$(free_port)
    local dir="$TMP/pg"
    mkdir -p "$dir" "$TMP/pgbench"
    chown "$PGUSER_OS" "$dir"
    chmod 700 "$dir"
    as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$TMP/initdb.log" 2>&1 ||
        { cat "$TMP/initdb.log" >&2; die "initdb failed"; }
    PGDATA="$dir/data"
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$dir/server.log" -w -t 60 -o \
        "-p $PGPORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c fsync=on -c synchronous_commit=on -c max_connections=$((CONNS + 20))" \
        start >"$TMP/pg_ctl.log" 2>&1 || { cat "$TMP/pg_ctl.log" "$dir/server.log" >&2; die "PostgreSQL did not start"; }
    psql -q -X -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -f "$BENCH_DIR/pg_schema.sql" >"$TMP/psql.log" 2>&1 || { cat "$TMP/psql.log" >&2; die "schema setup failed"; }
    say "  cluster $PGDATA (user $PGUSER_OS), port $PGPORT, wal_sync_method $(psql -X -At -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -c 'show wal_sync_method')"
    run_pgbench pg_distinct "append() random stream of 100,000" pg_append_distinct.sql
    run_pgbench pg_one "append() one stream" pg_append_one.sql
    local check
    check=$(psql -X -At -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -c \
        "select count(*), (select version from streams where stream = 'one') from events")
    say "  check: events rows, version of stream 'one': ${check//|/, }"
    stop_postgres
}

# ---------------------------------------------------------------- report
target_note() { # value op threshold
    awk -v v="${1:-}" -v op="$2" -v t="$3" 'BEGIN {
        if (v == "" || v == "-") { print "n/a"; exit }
        ok = (op == ">=") ? (v + 0 >= t) : (v + 0 < t)
        print (ok ? "met" : "not met") }'
}

declare -A LABEL=(
    [annals_distinct]="Annals (a) 1-event appends, distinct streams"
    [annals_distinct_wrk]="Annals (a') as (a), load from wrk + Lua (cross-check)"
    [annals_one]="Annals (b) 1-event appends, one stream"
    [annals_batch]="Annals (c) $BATCH-event batches"
    [annals_read]="Annals (d) read 100-event stream (events read/s)"
    [annals_cond]="Annals (f) conditional appends (DCB, one tag each)"
    [annals_keyed]="Annals (h) 1-event appends with Idempotency-Key"
    [annals_dlb]="Annals (i) 1-event appends through the DeltaBase dialect"
    [annals_native_i]="Annals (i') native 1-event appends next to (i)"
    [annals_state_append]="Annals (j) 1-event appends returning a Lua reducer's state"
    [annals_native_j]="Annals (j') native 1-event appends next to (j)"
    [annals_state_get]="Annals (k) state of a 100-event stream (Lua reducer)"
    [annals_es]="Annals (l) 1-CloudEvent appends (EvidentSource)"
    [annals_native_l]="Annals (l') native 1-event appends next to (l)"
    [annals_es_batch]="Annals (m) 100-CloudEvent appends (EvidentSource)"
    [annals_es_query]="Annals (n) EvidentSource selector query (events/s)"
    [annals_es_view]="Annals (o) state view over 1,000 events, repeated"
    [annals_hapnd]="Annals (p) Hapnd appends, reducer state in each 201"
    [annals_native_p]="Annals (p') native 1-event appends next to (p)"
    [annals_hapnd_state]="Annals (q) Hapnd state of a 100-event aggregate"
    [annals_j17]="Annals (r) j17 writes (schema, handler, implication)"
    [annals_native_r]="Annals (r') native 1-event appends next to (r)"
    [annals_j17_state]="Annals (s) j17 state of a 100-event aggregate"
    [annals_j17_sync]="Annals (s') j17 state, ?synchronous=true"
    [annals_deql]="Annals (t) DeQL EXECUTE (STATE AS + guard), distinct streams"
    [annals_native_t]="Annals (t') native 1-event appends next to (t)"
    [annals_deql_get]="Annals (u) DeQL state GET of a 100-event aggregate"
    [redis_distinct]="Redis XADD, distinct keys"
    [redis_one]="Redis XADD, one key"
    [pg_distinct]="PostgreSQL append(), distinct streams"
    [pg_one]="PostgreSQL append(), one stream"
)

report() {
    local k
    say ""
    say "================================ Annals benchmark report ================================"
    say "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)),"
    say "kernel $(uname -r), data on $(df -T "$TMP" | awk 'NR == 2 {print $2, $1}'), load average at start $LOAD0"
    say "$CONNS connections, ${SECS} s per run; latency = per request; memory = server VmRSS after the run (anon = RssAnon)"
    say ""
    printf '%-48s %10s %12s %8s %8s  %-8s %8s %8s\n' "workload" "req/s" "events/s" "p50 ms" "p99 ms" "errors" "mem MiB" "anon MiB"
    for k in "${CASES[@]}"; do
        printf '%-48s %10s %12s %8s %8s  %-8s %8s %8s\n' "${LABEL[$k]}" "$(fmt_int "${RPS[$k]}")" \
            "$(fmt_int "${EVS[$k]}")" "${P50[$k]}" "${P99[$k]}" "${ERRS[$k]}" "$(mib "${RSS[$k]}")" "$(mib "${ANON[$k]}")"
    done
    say "(mem: VmRSS; for Annals it includes the resident page-cache pages of its read-only mmap of the event log"
    say " and of the LMDB index, which grow with the data written and are reclaimable; anon = RssAnon, the process's"
    say " own memory. PostgreSQL: PSS summed over all its processes near the end of the run.)"
    say ""
    say "Syncs per acknowledged append during (a): $SYNC_APPENDS appends, $SYNC_COMMITS group commits (factor $GROUP appends/commit)"
    say "  log:   $SYNC_LOG fdatasyncs (one per batch) = $LOG_PER per append, average $SYNC_MS ms each"
    say "  index: $SYNC_INDEX index transactions (one fdatasync each, in the background) = $INDEX_PER per append"
    say "  total: ($SYNC_LOG + $SYNC_INDEX) / $SYNC_APPENDS = $SYNC_PER syncs per acknowledged append"
    [ -n "$STRACE_LINE" ] && say "  $STRACE_LINE"
    say "Live fan-out: $FANOUT_LINE; $FANOUT_MEM"
    say "Compaction: $COMPACT_LINE"
    say "Group-commit ceiling in process (log-based store), 64 appenders: $(fmt_int "$CEIL64") events/s distinct, $(fmt_int "$CEIL64_ONE") one stream"
    say ""
    say "Ratios (Annals / other, single-event durable appends at $CONNS connections):"
    say "  distinct streams: vs Redis $(ratio "${RPS[annals_distinct]:-}" "${RPS[redis_distinct]:-}")   vs PostgreSQL $(ratio "${RPS[annals_distinct]:-}" "${RPS[pg_distinct]:-}")"
    say "  one stream:       vs Redis $(ratio "${RPS[annals_one]:-}" "${RPS[redis_one]:-}")   vs PostgreSQL $(ratio "${RPS[annals_one]:-}" "${RPS[pg_one]:-}")"
    say ""
    say "Targets (reported, not asserted):"
    say "  >= 40,000 single-event appends/s at 64 connections: distinct $(fmt_int "${RPS[annals_distinct]:-}") ($(target_note "${RPS[annals_distinct]:-}" ">=" 40000)), one stream $(fmt_int "${RPS[annals_one]:-}") ($(target_note "${RPS[annals_one]:-}" ">=" 40000))"
    say "  >= 300,000 events/s in $BATCH-event batches:            $(fmt_int "${EVS[annals_batch]:-}") ($(target_note "${EVS[annals_batch]:-}" ">=" 300000))"
    say "  < 0.1 syncs (log + index) per acknowledged append:  $SYNC_PER ($(target_note "$SYNC_PER" "<" 0.1))"
    say "  ahead of Redis and PostgreSQL:                       distinct $(ahead distinct), one stream $(ahead one)"
    say "  the DeltaBase dialect within 10 % of native appends:  $(dialect_cost)"
    say "  appends returning Lua state >= 70 % of plain appends: $(state_cost)"
    say "  >= 30,000 state reads/s of 100-event streams:        $(fmt_int "${RPS[annals_state_get]:-}") ($(target_note "${RPS[annals_state_get]:-}" ">=" 30000))"
    say "  the EvidentSource dialect next to native appends:  $(es_cost)"
    say "  EvidentSource state view over 1,000 events: first read ${ES_VIEW_FIRST:-n/a} s, then $(fmt_int "${RPS[annals_es_view]:-}") reads/s"
    say "  projection catch-up (Lua): $PROJ_LINE"
    say "  projection catch-up (JavaScript): $PROJ_LINE_JS"
    say "  the Hapnd dialect: appends with a reducer's state $(hapnd_cost); state reads $(fmt_int "${RPS[annals_hapnd_state]:-}")/s"
    say "  projection catch-up (Hapnd, Lua): $PROJ_LINE_HAPND"
    say "  the j17 dialect: writes with a schema, a handler and an implication $(j17_cost); state reads $(fmt_int "${RPS[annals_j17_state]:-}")/s, synchronous $(fmt_int "${RPS[annals_j17_sync]:-}")/s"
    say "  the DeQL dialect: EXECUTE (STATE AS + guard) $(deql_cost); with --deql-workers 32 $(fmt_int "${RPS[annals_deql_w]:-}")/s; state GETs $(fmt_int "${RPS[annals_deql_get]:-}")/s"
    say "    ${DQ_LINE:-(t) not run}"
    say "  DeQL projection: ${DQ_SCAN_LINE:-not run}"
}

# DeQL EXECUTE (a decision with STATE AS and a guard, run on SQLite) against native plain
# appends: (t) vs (t').
deql_cost() {
    awk -v d="${RPS[annals_deql]:-}" -v n="${RPS[annals_native_t]:-}" 'BEGIN {
        if (d == "" || n == "" || n + 0 == 0) { print "n/a"; exit }
        printf "%.1f %% of native plain appends\n", d / n * 100 }'
}

# j17 writes (schema, handler, one implication: two events per commit) against native plain
# appends: (r) vs (r').
j17_cost() {
    awk -v d="${RPS[annals_j17]:-}" -v n="${RPS[annals_native_r]:-}" 'BEGIN {
        if (d == "" || n == "" || n + 0 == 0) { print "n/a"; exit }
        printf "%.1f %% of native plain appends\n", d / n * 100 }'
}

# Hapnd appends (a reducer's state in each answer) against native plain appends: (p) vs (p').
hapnd_cost() {
    awk -v d="${RPS[annals_hapnd]:-}" -v n="${RPS[annals_native_p]:-}" 'BEGIN {
        if (d == "" || n == "" || n + 0 == 0) { print "n/a"; exit }
        printf "%.1f %% of native plain appends\n", d / n * 100 }'
}

# Appends returning a reducer's state: (j) against (j'), measured back to back.
state_cost() {
    awk -v d="${RPS[annals_state_append]:-}" -v n="${RPS[annals_native_j]:-}" 'BEGIN {
        if (d == "" || n == "" || n + 0 == 0) { print "n/a"; exit }
        r = d / n * 100
        printf "%s (%.1f %% of plain)\n", (r >= 70 ? "met" : "not met"), r }'
}

# The EvidentSource dialect's cost: (l) against (l'), measured back to back.
es_cost() {
    awk -v d="${RPS[annals_es]:-}" -v n="${RPS[annals_native_l]:-}" 'BEGIN {
        if (d == "" || n == "" || n + 0 == 0) { print "n/a"; exit }
        printf "%.1f %% below native\n", (1 - d / n) * 100 }'
}

# The DeltaBase dialect's cost: (i) against (i'), measured back to back.
dialect_cost() {
    awk -v d="${RPS[annals_dlb]:-}" -v n="${RPS[annals_native_i]:-}" 'BEGIN {
        if (d == "" || n == "" || n + 0 == 0) { print "n/a"; exit }
        c = (1 - d / n) * 100
        printf "%s (%.1f %% below native)\n", (c <= 10 ? "met" : "not met"), c }'
}

ahead() { # distinct|one
    local a=${RPS[annals_$1]:-0} r=${RPS[redis_$1]:-0} p=${RPS[pg_$1]:-0}
    awk -v a="$a" -v r="$r" -v p="$p" 'BEGIN {
        s = (a > r ? "ahead of Redis" : "behind Redis") ", " (a > p ? "ahead of PostgreSQL" : "behind PostgreSQL"); print s }'
}

write_results() {
    local f="$BENCH_DIR/../docs/benchmarks.md" k
    {
        say "# Annals benchmark results"
        say ""
        say "Generated by \`BENCH_WRITE_RESULTS=1 make bench\` (bench/run.sh) on $(date -u '+%Y-%m-%d %H:%M UTC')."
        say ""
        say "- Machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
        say "- Storage: data directories on $(df -T "$TMP" | awk 'NR == 2 {print $2}') ($(df "$TMP" | awk 'NR == 2 {print $1}')); load average at start: $LOAD0"
        say "- Load: $CONNS connections, ${SECS} s per run, everything on 127.0.0.1 (client and server share the $(nproc) cores)"
        say "- Tools: bench/loadgen (C, epoll) for the Annals HTTP cases, $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}'), $(redis-server --version | awk '{print $3}' | sed 's/v=/Redis /'), PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') (pgbench); wrk for the cross-check (a')"
        say "- Durability: Annals acknowledges an append once its group-commit batch is written to the append-only event log and the log is fdatasync'd (one fdatasync per batch; the LMDB index is updated afterwards by a background indexer, one fdatasync per index transaction); Redis \`appendfsync always\`; PostgreSQL \`fsync=on\`, \`synchronous_commit=on\`"
        say ""
        say "| workload | req/s | events/s | p50 ms | p99 ms | errors | memory MiB¹ | anon MiB¹ | notes |"
        say "|---|---:|---:|---:|---:|---|---:|---:|---|"
        for k in "${CASES[@]}"; do
            say "| ${LABEL[$k]} | $(fmt_int "${RPS[$k]}") | $(fmt_int "${EVS[$k]}") | ${P50[$k]} | ${P99[$k]} | ${ERRS[$k]} | $(mib "${RSS[$k]}") | $(mib "${ANON[$k]}") | ${NOTE[$k]} |"
        done
        say ""
        say "¹ Memory: server VmRSS after the run (Annals, Redis), and its anonymous part (RssAnon). Annals mmaps its event log and its LMDB index read-only, so VmRSS includes the resident page-cache pages of those files (broken out in the notes): they grow with the data written and the kernel can reclaim them at any time; RssAnon is the server's own memory. For PostgreSQL: the PSS summed over all its processes near the end of the run."
        say ""
        say "## Syncs per acknowledged append ($CONNS connections, run (a))"
        say ""
        say "$SYNC_APPENDS acknowledged appends in $SYNC_COMMITS group commits: group-commit factor $GROUP appends per commit."
        say ""
        say "| | syncs | per append | |"
        say "|---|---:|---:|---|"
        say "| event log fdatasync (one per group commit, before the acknowledgement) | $SYNC_LOG | $LOG_PER | average $SYNC_MS ms |"
        say "| index transactions (one fdatasync each, background indexer) | $SYNC_INDEX | $INDEX_PER | $INDEX_EVS events, $INDEX_MS ms per transaction; $INDEX_CATCHUP |"
        say "| **total** | $((SYNC_LOG + SYNC_INDEX)) | **$SYNC_PER** | |"
        [ -n "$STRACE_LINE" ] && { say ""; say "Cross-check: $STRACE_LINE."; }
        say ""
        say "## Live fan-out (bench/sse_fanout: ${BENCH_FANOUT_SUBS:-1000} SSE subscribers, single-event appends at up to ${BENCH_FANOUT_RATE:-200}/s, ${SECS} s)"
        say ""
        say "\`$FANOUT_LINE\` — $FANOUT_MEM. Latency is from each event's commit time to its receipt by a subscriber (client and server on this machine)."
        say ""
        say "## Compaction (${BENCH_COMPACT_EVENTS:-1000000} events over 1,000 streams, half the streams deleted, one POST .../compaction)"
        say ""
        say "$COMPACT_LINE."
        say ""
        say "## In-process group-commit ceiling (bench/commit_ceiling: log-based store, no HTTP, $CEIL_SECS s per case)"
        say ""
        say '```'
        say "distinct streams:"
        grep 'events/s' "$TMP/ceiling-distinct.txt"
        say "one stream (ONE=1):"
        grep 'events/s' "$TMP/ceiling-one.txt"
        say '```'
        say ""
        say "## Ratios and targets"
        say ""
        say "| | Annals | Redis | PostgreSQL | Annals/Redis | Annals/PostgreSQL |"
        say "|---|---:|---:|---:|---:|---:|"
        say "| single-event appends/s, distinct streams | $(fmt_int "${RPS[annals_distinct]:-}") | $(fmt_int "${RPS[redis_distinct]:-}") | $(fmt_int "${RPS[pg_distinct]:-}") | $(ratio "${RPS[annals_distinct]:-}" "${RPS[redis_distinct]:-}") | $(ratio "${RPS[annals_distinct]:-}" "${RPS[pg_distinct]:-}") |"
        say "| single-event appends/s, one stream | $(fmt_int "${RPS[annals_one]:-}") | $(fmt_int "${RPS[redis_one]:-}") | $(fmt_int "${RPS[pg_one]:-}") | $(ratio "${RPS[annals_one]:-}" "${RPS[redis_one]:-}") | $(ratio "${RPS[annals_one]:-}" "${RPS[pg_one]:-}") |"
        say ""
        say "| target | measured | |"
        say "|---|---:|---|"
        say "| >= 40,000 single-event appends/s at 64 connections (distinct) | $(fmt_int "${RPS[annals_distinct]:-}") | $(target_note "${RPS[annals_distinct]:-}" ">=" 40000) |"
        say "| >= 40,000 single-event appends/s at 64 connections (one stream) | $(fmt_int "${RPS[annals_one]:-}") | $(target_note "${RPS[annals_one]:-}" ">=" 40000) |"
        say "| >= 300,000 events/s in $BATCH-event batches | $(fmt_int "${EVS[annals_batch]:-}") | $(target_note "${EVS[annals_batch]:-}" ">=" 300000) |"
        say "| < 0.1 syncs per acknowledged append at 64 connections (log + index) | $SYNC_PER | $(target_note "$SYNC_PER" "<" 0.1) |"
        say "| ahead of Redis and PostgreSQL (distinct) | | $(ahead distinct) |"
        say "| ahead of Redis and PostgreSQL (one stream) | | $(ahead one) |"
        say "| the DeltaBase dialect within 10 % of native single-event appends ((i) vs (i')) | $(fmt_int "${RPS[annals_dlb]:-}") vs $(fmt_int "${RPS[annals_native_i]:-}") | $(dialect_cost) |"
        say "| appends returning a Lua reducer's state at least 70 % of plain appends ((j) vs (j')) | $(fmt_int "${RPS[annals_state_append]:-}") vs $(fmt_int "${RPS[annals_native_j]:-}") | $(state_cost) |"
        say "| >= 30,000 state reads/s of 100-event streams ((k)) | $(fmt_int "${RPS[annals_state_get]:-}") | $(target_note "${RPS[annals_state_get]:-}" ">=" 30000) |"
        say "| EvidentSource CloudEvents appends next to native ((l) vs (l')) | $(fmt_int "${RPS[annals_es]:-}") vs $(fmt_int "${RPS[annals_native_l]:-}") | $(es_cost) |"
        say "| EvidentSource state view over 1,000 events: first read, repeated reads/s | ${ES_VIEW_FIRST:-n/a} s, $(fmt_int "${RPS[annals_es_view]:-}") | |"
        say "| projection catch-up in Lua >= 200,000 events/s | $PROJ_LINE | |"
        say "| projection catch-up in JavaScript >= 100,000 events/s | $PROJ_LINE_JS | |"
        say "| Hapnd appends with a reducer's state next to native plain appends ((p) vs (p')) | $(fmt_int "${RPS[annals_hapnd]:-}") vs $(fmt_int "${RPS[annals_native_p]:-}") | $(hapnd_cost) |"
        say "| Hapnd state reads of a 100-event aggregate ((q)) | $(fmt_int "${RPS[annals_hapnd_state]:-}") | |"
        say "| Hapnd projection catch-up (Lua, uploaded zip) | $PROJ_LINE_HAPND | |"
        say "| j17 writes (schema, handler, one implication) next to native plain appends ((r) vs (r')) | $(fmt_int "${RPS[annals_j17]:-}") vs $(fmt_int "${RPS[annals_native_r]:-}") | $(j17_cost) |"
        say "| j17 state reads of a 100-event aggregate ((s); (s') ?synchronous=true) | $(fmt_int "${RPS[annals_j17_state]:-}"); $(fmt_int "${RPS[annals_j17_sync]:-}") | |"
        say "| DeQL EXECUTE (STATE AS + guard) next to native plain appends ((t) vs (t')); (t*) with --deql-workers 32 | $(fmt_int "${RPS[annals_deql]:-}") vs $(fmt_int "${RPS[annals_native_t]:-}"); $(fmt_int "${RPS[annals_deql_w]:-}") | $(deql_cost); ${DQ_LINE:-} |"
        say "| DeQL state GETs of a 100-event aggregate ((u)) | $(fmt_int "${RPS[annals_deql_get]:-}") | |"
        say "| DeQL GROUP BY projection ((v)) | ${DQ_SCAN_LINE:-not run} | |"
    } >"$f"
    say ""
    say "wrote $f"
}

# ---------------------------------------------------------------- main
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
say "Annals benchmark: $CONNS connections, ${SECS} s per run, $(nproc) cores, temp dir $TMP"
bench_annals
bench_query
bench_projection
bench_deql_scan
bench_compact
bench_fanout
bench_ceiling
bench_redis
bench_postgres
report
[ "${BENCH_WRITE_RESULTS:-0}" = 1 ] && write_results
say ""
say "bench: done in $(($(date +%s) - T0)) s"
exit 0
