#!/usr/bin/env bash
# Installs what the tests and scripts/demo need on Debian, idempotently (run as root):
# GoogleTest and Google Benchmark (unit tests, benchmarks),
# Dovecot 2.3 (IMAP + LMTP, run privately by the tests, never as the system service), openssl
# (the test CA), Debian's python3 (standard library only), curl (the demo), and the vmail user
# that owns the test maildirs (Dovecot will not run mail processes as root).
# Postfix: the tests run private instances (own config/queue dirs, free loopback ports, see
# tests/integration/harness/postfix.py); the package is installed with "No configuration" and a
# system instance is never left running on port 25. Dovecot's oauth2 passdb is in dovecot-core.
set -euo pipefail

packages=(dovecot-imapd dovecot-lmtpd postfix redis-server rabbitmq-server yamllint
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
  # Postfix without a system configuration (no /etc/postfix/main.cf, nothing on port 25).
  echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
  apt-get update -qq
  # policy-rc.d-free containers: dovecot-core's postinst may try to start the system service;
  # the tests never use it (they start their own Dovecot on free loopback ports).
  apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "install-test-deps.sh: packages already installed: ${packages[*]}"
fi

# Postfix's postinst may have started the system instance (it does when a main.cf exists, e.g. a
# preseeded "Local only"); the tests never use it, and only ours may listen. Stop it when this
# run installed the package; an instance that was already there is left alone.
if [[ " ${missing[*]-} " == *" postfix "* ]] && [[ -f /etc/postfix/main.cf ]] &&
   postfix status >/dev/null 2>&1; then
  echo "install-test-deps.sh: stopping the system Postfix started by its package" >&2
  postfix stop >/dev/null 2>&1 || true
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    systemctl disable --now postfix >/dev/null 2>&1 || true
  fi
fi
# The private Postfix instances run as the package's postfix user and postdrop group.
getent passwd postfix >/dev/null && getent group postdrop >/dev/null ||
  { echo "install-test-deps.sh: user postfix / group postdrop missing (package postfix?)" >&2; exit 1; }

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
echo "install-test-deps.sh: ok ($(dovecot --version 2>/dev/null | cut -d' ' -f1), postfix $(postconf -d -h mail_version 2>/dev/null), $(openssl version))"
