#!/usr/bin/env bash
# Installs what building email-listener needs, from Debian 12 packages. Idempotent.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PKGS=(cmake ninja-build g++ ccache pkg-config
      libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
      libgmime-3.0-dev libssl-dev libhiredis-dev librabbitmq-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
