#!/usr/bin/env bash
# Installs what the tests and scripts/demo need on Debian, idempotently (run as root):
# GoogleTest and Google Benchmark (unit tests, benchmarks),
# Dovecot 2.3 (IMAP + LMTP, run privately by the tests, never as the system service), openssl
# (the test CA), Debian's python3 (standard library only), curl (the demo), and the vmail user
# that owns the test maildirs (Dovecot will not run mail processes as root).
set -euo pipefail

packages=(dovecot-imapd dovecot-lmtpd redis-server rabbitmq-server yamllint
          openssl python3 curl ca-certificates passwd procps
          libgtest-dev libgmock-dev libbenchmark-dev clang-format)

if [[ $(id -u) -ne 0 ]]; then
  echo "install-test-deps.sh: run as root (apt-get, useradd)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d-free containers: dovecot-core's postinst may try to start the system service;
  # the tests never use it (they start their own Dovecot on free loopback ports).
  apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "install-test-deps.sh: packages already installed: ${packages[*]}"
fi

# The mail user of the test Dovecots. dovenull (login) and dovecot (internal) come with
# dovecot-core.
getent group vmail >/dev/null || groupadd --system vmail
getent passwd vmail >/dev/null ||
  useradd --system --gid vmail --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin vmail
for u in dovenull dovecot; do
  getent passwd "$u" >/dev/null || { echo "install-test-deps.sh: user $u missing (dovecot-core?)" >&2; exit 1; }
done

# Best effort: every IDLE session holds an inotify instance of the mail user; the kernel default
# of 128 silently turns IDLE into mailbox_idle_check_interval polling beyond that.
cur=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 0)
if ((cur < 4096)); then
  sysctl -q -w fs.inotify.max_user_instances=4096 2>/dev/null ||
    echo "install-test-deps.sh: could not raise fs.inotify.max_user_instances (now $cur)" >&2
fi
echo "install-test-deps.sh: ok ($(dovecot --version 2>/dev/null | cut -d' ' -f1), $(openssl version))"
