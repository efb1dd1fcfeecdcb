#!/usr/bin/env bash
# README command 1: install build dependencies, build, and start `email-listener serve` on the
# embedded default (in-memory registry, in-process queue, no external service).
# Extra arguments go to `serve`, e.g. scripts/run.sh --webhook-url http://127.0.0.1:9000/hook
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEL_BUILD_TESTS=OFF -DEL_BUILD_BENCH=OFF >/dev/null
ninja -C build email-listener
exec build/email-listener serve "$@"
