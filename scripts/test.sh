#!/usr/bin/env bash
# README command 2: install everything the tests need (build tools, Dovecot, ...), build, and
# run the whole test suite, unit and integration tests (real Dovecot servers), twice: on the
# normal build, and on a build with AddressSanitizer + UndefinedBehaviorSanitizer (the service
# binary the integration tests start is the sanitized one). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-$(nproc)}"
# ccache (when installed) may reuse objects compiled in another checkout of the same sources.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}" CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
scripts/install-deps.sh
scripts/install-test-deps.sh

echo "== format (clang-format, .clang-format)"
git ls-files 'src/*.cpp' 'src/*.hpp' 'tests/*.cpp' 'tests/*.hpp' 'bench/*.cpp' |
  xargs clang-format --style=file --dry-run --Werror

echo "== build (RelWithDebInfo)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build -j "$JOBS"

echo "== build (ASan + UBSan)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DEL_SANITIZE=ON -DEL_BUILD_BENCH=OFF >/dev/null
ninja -C build-asan -j "$JOBS"

echo "== tests under ASan + UBSan (unit + integration)"
# ELTEST_TIME_FACTOR: the fleet scenarios' time bounds stretch for the slower sanitized nodes.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ELTEST_TIME_FACTOR=3 ctest --test-dir build-asan --output-on-failure -j "$JOBS"

echo "== tests (unit + integration against real servers)"
ctest --test-dir build --output-on-failure -j "$JOBS"
