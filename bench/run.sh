#!/usr/bin/env bash
# Annals benchmark harness (`make bench`). Usage: bench/run.sh ANNALS_BIN COMMIT_CEILING_BIN
#
# Measures, on this machine, with every server on 127.0.0.1 and a fresh temporary data dir:
#   1. Annals over HTTP (wrk --latency, 64 connections):
#      (a) single-event durable appends, each connection to its own streams;
#      (b) the same, all to one stream (expectedVersion "any");
#      (c) 100-event batches (events/s = requests/s * 100);
#      (d) reading a 100-event stream (GET .../streams/{s}/events?limit=100);
#      (e) syncs per acknowledged append during (a), from the writer's commit/append counters
#          (each LMDB commit = fdatasync + one O_DSYNC meta-page write = 2 syncs), confirmed
#          with strace when it is installed;
#   2. the in-process LMDB group-commit ceiling (bench/commit_ceiling.c), distinct and ONE=1;
#   3. Redis 7 streams (XADD, appendfsync always) with redis-benchmark, distinct keys / one key;
#   4. PostgreSQL 15 (fsync=on, synchronous_commit=on), a plpgsql append() with a per-stream
#      version check, driven by pgbench, distinct streams / one stream;
#   5. ratios of Annals to Redis and PostgreSQL, and the targets next to the figures.
# It is a report: it exits 0 whatever the figures are, and non-zero only when a component is
# missing or fails to start. Every process it starts is stopped on exit.
#
# Environment:
#   BENCH_SECONDS=10          seconds per measured run
#   BENCH_CONNECTIONS=64      concurrent connections / clients
#   BENCH_WRK_THREADS=2       wrk threads (and pgbench -j)
#   BENCH_CEILING_SECONDS=1   seconds per batch size in the commit ceiling tool (5 sizes x 2)
#   BENCH_STRACE=1            0 skips the strace confirmation of (e)
#   BENCH_WRITE_RESULTS=0     1 writes the figures to bench/RESULTS.md
#   BENCH_KEEP=0              1 keeps the temporary directory (logs, data) for inspection
#   BENCH_TMPDIR=/tmp         where the temporary directory is made (must be a real disk:
#                             on tmpfs fsync is free and the figures mean nothing)
set -u
set -o pipefail

ANNALS=${1:-./build/annals}
CEILING=${2:-./build/bench/commit_ceiling}
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

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { awk -v k="${1:-0}" 'BEGIN { if (k == "" || k == 0) print "-"; else printf "%.1f", k / 1024 }'; }

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
declare -A RPS EVS P50 P99 ERRS RSS NOTE
CASES=()
record() { # key rps events/s p50 p99 errors rss_kb note
    CASES+=("$1")
    RPS[$1]=$2 EVS[$1]=$3 P50[$1]=$4 P99[$1]=$5 ERRS[$1]=$6 RSS[$1]=$7 NOTE[$1]=${8:-}
}

# ---------------------------------------------------------------- Annals
annals_stats() { # prints "commits appends" for database default
    curl -sf "http://127.0.0.1:$APORT/v1/databases/default" | python3 -c '
import json, sys
w = json.load(sys.stdin)["writer"]
print(w["commits"], w["appends"])'
}

start_annals() {
    APORT=$(free_port 7171)
    mkdir -p "$TMP/annals"
    "$ANNALS" serve --data "$TMP/annals" --listen "127.0.0.1:$APORT" --log-level warn \
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

# run_wrk KEY LABEL EVENTS_PER_REQUEST SCRIPT [script args...]
run_wrk() {
    local key=$1 label=$2 per=$3 script=$4
    shift 4
    local out="$TMP/wrk-$key.txt"
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"${SECS}s" --timeout 10s --latency \
        -s "$BENCH_DIR/$script" "http://127.0.0.1:$APORT" -- "$@" >"$out" 2>&1
    local rc=$?
    local rss
    rss=$(rss_kb "$APID")
    kill -0 "$APID" 2>/dev/null || { cat "$out" "$TMP/annals.log" >&2; APID=""; die "Annals died during $label"; }
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
    local evs
    evs=$(awk -v r="$rps" -v k="$per" 'BEGIN { printf "%.0f", r * k }')
    local errs=${non2xx:-?}
    [ -n "$sockerr" ] && errs="$errs (socket: $sockerr)"
    [ $rc -ne 0 ] && errs="$errs (wrk exit $rc)"
    record "$key" "$rps" "$evs" "$p50" "$p99" "$errs" "$rss" "statuses $statuses"
    printf '  %-44s %10s req/s %12s events/s  p50 %7s ms  p99 %7s ms  non-2xx %s  RSS %s MiB\n' \
        "$label" "$(fmt_int "$rps")" "$(fmt_int "$evs")" "$p50" "$p99" "$errs" "$(mib "$rss")"
    [ -n "$first" ] && say "    first non-2xx answer: $first"
    return 0
}

strace_confirm() { # a short extra run of (a) under strace, counting the sync calls
    local out="$TMP/strace.txt"
    # Attach to the idle server, then run the load: the server commits nothing outside the
    # wrk run, so strace and the writer counters cover exactly the same commits.
    strace -f -c -e trace=fdatasync,fsync,msync,sync_file_range -o "$out" -p "$APID" \
        >/dev/null 2>"$TMP/strace.err" &
    local spid=$! i
    BGPIDS+=("$spid")
    for i in $(seq 1 50); do
        grep -q attached "$TMP/strace.err" 2>/dev/null && break
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.1
    done
    local before after
    before=$(annals_stats)
    wrk -t"$WRK_THREADS" -c"$CONNS" -d3s -s "$BENCH_DIR/append_distinct.lua" \
        "http://127.0.0.1:$APORT" >"$TMP/wrk-strace.txt" 2>&1
    after=$(annals_stats)
    kill -INT "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    BGPIDS=()
    local calls
    calls=$(awk '$NF ~ /^(fdatasync|fsync|msync|sync_file_range)$/ { n += $4 } END { print n + 0 }' "$out" 2>/dev/null)
    set -- $before $after
    local dc=$(($3 - $1)) da=$(($4 - $2))
    if [ "$da" -gt 0 ] && [ "${calls:-0}" -gt 0 ]; then
        STRACE_LINE=$(awk -v c="$calls" -v dc="$dc" -v da="$da" 'BEGIN {
            printf "strace, 3 s of (a) (slowed by tracing): %d fdatasync calls for %d commits and %d acknowledged appends: (%d fdatasync + %d O_DSYNC meta writes) / %d = %.4f syncs per append",
                c, dc, da, c, dc, da, (c + dc) / da }')
    else
        STRACE_LINE="strace: no sync calls seen (tracing not permitted here?); see $TMP/strace.err"
    fi
    say "  $STRACE_LINE"
}

bench_annals() {
    say "== 1. Annals $("$ANNALS" version 2>/dev/null | head -1) on 127.0.0.1 (HTTP, wrk $CONNS connections, $WRK_THREADS threads, ${SECS} s per case)"
    start_annals
    say "  server pid $APID, port $APORT, data $TMP/annals, RSS at start $(mib "$(rss_kb "$APID")") MiB"

    local before after
    before=$(annals_stats) || die "cannot read Annals statistics"
    run_wrk annals_distinct "(a) 1-event appends, distinct streams" 1 append_distinct.lua
    after=$(annals_stats)
    set -- $before $after
    local dc=$(($3 - $1)) da=$(($4 - $2))
    SYNC_COMMITS=$dc SYNC_APPENDS=$da
    SYNC_PER=$(awk -v c="$dc" -v a="$da" 'BEGIN { if (a) printf "%.4f", 2 * c / a; else print "-" }')
    CPA=$(awk -v c="$dc" -v a="$da" 'BEGIN { if (a) printf "%.4f", c / a; else print "-" }')
    GROUP=$(awk -v c="$dc" -v a="$da" 'BEGIN { if (c) printf "%.1f", a / c; else print "-" }')
    say "  (e) during (a): $dc commits for $da acknowledged appends: commits/append $CPA (group commit factor $GROUP),"
    say "      syncs per acknowledged append (2 per commit) $SYNC_PER   [target < 0.1]"
    STRACE_LINE=""
    if [ "${BENCH_STRACE:-1}" != 0 ] && command -v strace >/dev/null; then
        strace_confirm
    fi

    run_wrk annals_one "(b) 1-event appends, one stream" 1 append_one.lua bench-one
    run_wrk annals_batch "(c) $BATCH-event batches, distinct streams" "$BATCH" append_batch.lua "$BATCH"

    # A stream of exactly 100 events to read.
    python3 -c "
import json
print(json.dumps({'events': [{'type': 'bench.appended', 'data': {'n': i, 'text': 'hello world'}} for i in range(1, 101)]}))" \
        >"$TMP/read-body.json"
    curl -sf -X POST -H 'Content-Type: application/json' --data-binary @"$TMP/read-body.json" \
        "http://127.0.0.1:$APORT/v1/databases/default/streams/bench-read/events" >/dev/null ||
        die "could not create the stream to read"
    run_wrk annals_read "(d) read 100-event stream (limit=100)" 100 read_stream.lua bench-read 100

    ANNALS_RSS_END=$(rss_kb "$APID")
    stop_pid "$APID"
    APID=""
    if grep -q '"level":"error"' "$TMP/annals.log"; then
        say "  server errors logged:"
        grep '"level":"error"' "$TMP/annals.log" | head -5 | sed 's/^/    /'
    fi
}

# ---------------------------------------------------------------- commit ceiling
ceiling_at_64() { # events/s of the 64-appender (or 64-batch) line of the tool's output
    awk '/events\/s/ && ($1 == "64" || $2 == "64:") {
        for (i = 2; i <= NF; i++) if ($i == "events/s") { print $(i - 1); exit } }' "$1"
}
bench_ceiling() {
    say ""
    say "== 2. In-process LMDB group-commit ceiling (no HTTP; $CEIL_SECS s per batch size)"
    say "  distinct streams:"
    "$CEILING" "$TMP/ceiling" "$CEIL_SECS" 2>>"$TMP/ceiling.log" | tee "$TMP/ceiling-distinct.txt" |
        grep -v '^LMDB' | sed 's/^/  /' || die "commit ceiling tool failed"
    say "  one stream (ONE=1):"
    ONE=1 "$CEILING" "$TMP/ceiling" "$CEIL_SECS" 2>>"$TMP/ceiling.log" | tee "$TMP/ceiling-one.txt" |
        grep -v '^LMDB' | sed 's/^/  /' || die "commit ceiling tool failed"
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
    local rss
    rss=$(rss_kb "$RPID")
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
    record "$key" "$rps" "$rps" "$p50" "$p99" "$errs" "$rss" "$note"
    printf '  %-44s %10s req/s %12s events/s  p50 %7s ms  p99 %7s ms  errors %s  RSS %s MiB\n' \
        "$label" "$(fmt_int "$rps")" "$(fmt_int "$rps")" "$p50" "$p99" "$errs" "$(mib "$rss")"
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
    record "$key" "${tps:-0}" "${tps:-0}" "$p50" "$p99" "$errs" "$pss" "$n transactions, avg latency ${avg:-?} ms; memory = PSS of all postgres processes"
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
    [annals_one]="Annals (b) 1-event appends, one stream"
    [annals_batch]="Annals (c) $BATCH-event batches"
    [annals_read]="Annals (d) read 100-event stream (events read/s)"
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
    say "$CONNS connections, ${SECS} s per run; latency = per request; memory = server RSS after the run"
    say ""
    printf '%-48s %10s %12s %8s %8s  %-8s %8s\n' "workload" "req/s" "events/s" "p50 ms" "p99 ms" "errors" "mem MiB"
    for k in "${CASES[@]}"; do
        printf '%-48s %10s %12s %8s %8s  %-8s %8s\n' "${LABEL[$k]}" "$(fmt_int "${RPS[$k]}")" \
            "$(fmt_int "${EVS[$k]}")" "${P50[$k]}" "${P99[$k]}" "${ERRS[$k]}" "$(mib "${RSS[$k]}")"
    done
    say "(PostgreSQL memory: PSS summed over all its processes near the end of the run)"
    say ""
    say "Syncs per acknowledged append during (a): $SYNC_COMMITS commits / $SYNC_APPENDS appends = $CPA commits per append"
    say "  (group commit factor $GROUP) -> $SYNC_PER syncs per append (fdatasync + O_DSYNC meta write per commit)"
    [ -n "$STRACE_LINE" ] && say "  $STRACE_LINE"
    say "LMDB group-commit ceiling in process, 64 appenders: $(fmt_int "$CEIL64") events/s distinct, $(fmt_int "$CEIL64_ONE") one stream"
    say ""
    say "Ratios (Annals / other, single-event durable appends at $CONNS connections):"
    say "  distinct streams: vs Redis $(ratio "${RPS[annals_distinct]:-}" "${RPS[redis_distinct]:-}")   vs PostgreSQL $(ratio "${RPS[annals_distinct]:-}" "${RPS[pg_distinct]:-}")"
    say "  one stream:       vs Redis $(ratio "${RPS[annals_one]:-}" "${RPS[redis_one]:-}")   vs PostgreSQL $(ratio "${RPS[annals_one]:-}" "${RPS[pg_one]:-}")"
    say ""
    say "Targets (reported, not asserted):"
    say "  >= 40,000 single-event appends/s at 64 connections: distinct $(fmt_int "${RPS[annals_distinct]:-}") ($(target_note "${RPS[annals_distinct]:-}" ">=" 40000)), one stream $(fmt_int "${RPS[annals_one]:-}") ($(target_note "${RPS[annals_one]:-}" ">=" 40000))"
    say "  >= 300,000 events/s in $BATCH-event batches:            $(fmt_int "${EVS[annals_batch]:-}") ($(target_note "${EVS[annals_batch]:-}" ">=" 300000))"
    say "  < 0.1 fsyncs per acknowledged request at 64 conns:   $SYNC_PER ($(target_note "$SYNC_PER" "<" 0.1))"
    say "  ahead of Redis and PostgreSQL:                       distinct $(ahead distinct), one stream $(ahead one)"
}

ahead() { # distinct|one
    local a=${RPS[annals_$1]:-0} r=${RPS[redis_$1]:-0} p=${RPS[pg_$1]:-0}
    awk -v a="$a" -v r="$r" -v p="$p" 'BEGIN {
        s = (a > r ? "ahead of Redis" : "behind Redis") ", " (a > p ? "ahead of PostgreSQL" : "behind PostgreSQL"); print s }'
}

write_results() {
    local f="$BENCH_DIR/RESULTS.md" k
    {
        say "# Annals benchmark results"
        say ""
        say "Generated by \`BENCH_WRITE_RESULTS=1 make bench\` (bench/run.sh) on $(date -u '+%Y-%m-%d %H:%M UTC')."
        say ""
        say "- Machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
        say "- Storage: data directories on $(df -T "$TMP" | awk 'NR == 2 {print $2}') ($(df "$TMP" | awk 'NR == 2 {print $1}')); load average at start: $LOAD0"
        say "- Load: $CONNS connections, ${SECS} s per run, everything on 127.0.0.1 (client and server share the $(nproc) cores)"
        say "- Tools: $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}'), $(redis-server --version | awk '{print $3}' | sed 's/v=/Redis /'), PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') (pgbench)"
        say "- Durability: Annals acknowledges after the LMDB commit is on disk; Redis \`appendfsync always\`; PostgreSQL \`fsync=on\`, \`synchronous_commit=on\`"
        say ""
        say "| workload | req/s | events/s | p50 ms | p99 ms | errors | memory MiB | notes |"
        say "|---|---:|---:|---:|---:|---|---:|---|"
        for k in "${CASES[@]}"; do
            say "| ${LABEL[$k]} | $(fmt_int "${RPS[$k]}") | $(fmt_int "${EVS[$k]}") | ${P50[$k]} | ${P99[$k]} | ${ERRS[$k]} | $(mib "${RSS[$k]}") | ${NOTE[$k]} |"
        done
        say ""
        say "Memory: server VmRSS after the run (Annals, Redis); for PostgreSQL the PSS summed over all its processes near the end of the run."
        say ""
        say "## Syncs per acknowledged append (64 connections, run (a))"
        say ""
        say "$SYNC_COMMITS LMDB commits for $SYNC_APPENDS acknowledged appends: $CPA commits per append (group commit factor $GROUP)."
        say "Each commit is 2 syncs (fdatasync of the data, then an O_DSYNC meta-page write): **$SYNC_PER syncs per acknowledged append**."
        [ -n "$STRACE_LINE" ] && { say ""; say "Cross-check: $STRACE_LINE."; }
        say ""
        say "## In-process LMDB group-commit ceiling (bench/commit_ceiling, $CEIL_SECS s per size)"
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
        say "| < 0.1 fsyncs per acknowledged request at 64 connections | $SYNC_PER | $(target_note "$SYNC_PER" "<" 0.1) |"
        say "| ahead of Redis and PostgreSQL (distinct) | | $(ahead distinct) |"
        say "| ahead of Redis and PostgreSQL (one stream) | | $(ahead one) |"
    } >"$f"
    say ""
    say "wrote $f"
}

# ---------------------------------------------------------------- main
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
say "Annals benchmark: $CONNS connections, ${SECS} s per run, $(nproc) cores, temp dir $TMP"
bench_annals
bench_ceiling
bench_redis
bench_postgres
report
[ "${BENCH_WRITE_RESULTS:-0}" = 1 ] && write_results
say ""
say "bench: done in $(($(date +%s) - T0)) s"
exit 0
