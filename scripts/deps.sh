#!/usr/bin/env bash
# Installs the Debian 12 packages Annals needs to build (--run), build and test (default), or
# also benchmark (--bench).
# Idempotent: installs only what is missing. Run as root (make run / make test call it).
set -eu
BUILD_PKGS="build-essential pkg-config liblmdb-dev libjansson-dev libssl-dev libwslay-dev libcurl4-openssl-dev libtcmalloc-minimal4"
TEST_PKGS="python3 curl procps clang libclang-rt-14-dev libfaketime chromium python3-prometheus-client python3-jsonschema nodejs npm"
BENCH_PKGS="wrk redis-server postgresql"
want="$BUILD_PKGS $TEST_PKGS"
case "${1:-}" in
    --run) want="$BUILD_PKGS" ;;              # make run: just what building needs
    --bench) want="$want $BENCH_PKGS" ;;
esac
missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "deps: missing packages:$missing (run as root, or install them)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "deps: installing$missing"
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
