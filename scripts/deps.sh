#!/usr/bin/env bash
# Installs the Debian 12 packages Annals needs to build (--run), build and test (default), or
# also benchmark (--bench); the npm packages of assets/package.json (browser scripts the build
# embeds) and, for testing, of tests/package.json (npm ci, from their lockfiles, when
# node_modules is missing or older than the lockfile).
# Idempotent: installs only what is missing. Run as root (make run / make test call it).
set -eu
BUILD_PKGS="build-essential pkg-config liblmdb-dev libjansson-dev libssl-dev libwslay-dev libcurl4-openssl-dev libtcmalloc-minimal4 liblua5.4-dev libmozjs-102-dev libzip-dev libpcre2-dev libsqlite3-dev g++ esbuild nodejs npm"
TEST_PKGS="python3 curl procps clang libclang-rt-14-dev libfaketime chromium python3-prometheus-client python3-jsonschema wabt"
BENCH_PKGS="wrk redis-server postgresql"
want="$BUILD_PKGS $TEST_PKGS"
case "${1:-}" in
    --run) want="$BUILD_PKGS" ;;              # make run: just what building needs
    --bench) want="$want $BENCH_PKGS" ;;
esac

# True when package p is installed, or (nodejs, npm) its command is there: a machine whose
# Node.js comes from another build (NodeSource's nodejs ships npm) cannot take Debian's npm.
have() {
    case "$1" in
        nodejs) command -v node >/dev/null 2>&1 && return 0 ;;
        npm) command -v npm >/dev/null 2>&1 && return 0 ;;
    esac
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=""
for p in $want; do
    have "$p" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "deps: missing packages:$missing (run as root, or install them)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    echo "deps: installing$missing"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# The browser scripts the binary embeds (assets/package.json: htmx), as its lockfile pins them.
npm_ci() { # DIR: npm ci there when node_modules is missing or older than the lockfile
    local stamp="$1/node_modules/.package-lock.json"
    if [ ! -f "$stamp" ] || [ "$1/package-lock.json" -nt "$stamp" ] ||
        [ "$1/package.json" -nt "$stamp" ]; then
        echo "deps: npm ci in $(basename "$1")/"
        (cd "$1" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
}
npm_ci "$(cd "$(dirname "$0")/../assets" && pwd)"

[ "${1:-}" = --run ] && exit 0
# The tests' npm packages (tests/package.json), exactly as tests/package-lock.json pins them.
npm_ci "$(cd "$(dirname "$0")/../tests" && pwd)"
