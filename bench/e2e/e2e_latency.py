#!/usr/bin/python3
"""End-to-end latency benchmark: N mailboxes on a private local Dovecot, M emails injected over
LMTP, latency from LMTP acceptance to webhook arrival.

Dovecot announces new mail to an IDLE client some time after delivery; that is the floor under
any listener. So a bare IDLE client (raw IMAP on a socket) watches every mailbox in the same run,
and the service's own overhead is reported per email as: webhook arrival - the bare client's
EXISTS for that message.

usage: bench/e2e/e2e_latency.py [--mailboxes 100] [--emails 500] [--rate 50] [--hibernate 0]
Needs build/email-listener (or $EMAIL_LISTENER_BIN) and Dovecot (scripts/install-test-deps.sh).
Only 127.0.0.1; every loop is bounded in count and time.
"""

import argparse
import os
import re
import socket
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'tests', 'integration'))

from harness.dovecot import Dovecot, make_message  # noqa: E402
from harness.service import Service, mailbox_payload  # noqa: E402
from harness.webhook import WebhookReceiver  # noqa: E402


def pct(values, p):
    if not values:
        return float('nan')
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


def summary(name, values_ms):
    return (f'{name:<34} n={len(values_ms):4d}  p50={pct(values_ms, 50):8.2f}  '
            f'p90={pct(values_ms, 90):8.2f}  p99={pct(values_ms, 99):8.2f}  '
            f'max={max(values_ms) if values_ms else float("nan"):8.2f}  ms')


class BareIdle(threading.Thread):
    """Raw IMAP IDLE on one mailbox; records the monotonic time each EXISTS count is first seen."""

    def __init__(self, dovecot, user, stop_at):
        super().__init__(daemon=True)
        self.user = user
        self.stop_at = stop_at
        self.seen = {}  # exists count -> time
        self.sock = socket.create_connection(('127.0.0.1', dovecot.imap_port), timeout=10)
        self.buf = b''
        self._read_line()  # greeting
        self._cmd(f'a LOGIN {user} {dovecot.password(user)}')
        self._cmd('b SELECT INBOX')
        self.sock.sendall(b'c IDLE\r\n')
        while not self._read_line().startswith(b'+'):
            pass

    def _read_line(self):
        while b'\r\n' not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError('closed')
            self.buf += chunk
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line

    def _cmd(self, text):
        tag = text.split(' ', 1)[0].encode()
        self.sock.sendall(text.encode() + b'\r\n')
        while True:
            line = self._read_line()
            if line.startswith(tag + b' '):
                if b' OK' not in line:
                    raise RuntimeError(f'{text!r} -> {line!r}')
                return

    def run(self):
        self.sock.settimeout(0.2)
        while time.monotonic() < self.stop_at:
            try:
                line = self._read_line()
            except (socket.timeout, TimeoutError):
                continue
            except (ConnectionError, OSError):
                return
            m = re.match(rb'\* (\d+) EXISTS', line)
            if m:
                now = time.monotonic()
                n = int(m.group(1))
                self.seen.setdefault(n, now)

    def exists_time(self, uid):
        """First time the mailbox was announced with at least `uid` messages (UIDs start at 1 in a
        fresh mailbox and nothing is expunged, so message uid is the uid-th message)."""
        times = [t for n, t in self.seen.items() if n >= uid]
        return min(times) if times else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--mailboxes', type=int, default=100)
    ap.add_argument('--emails', type=int, default=500)
    ap.add_argument('--rate', type=float, default=50.0, help='emails per second injected')
    ap.add_argument('--hibernate', default='0', help="Dovecot imap_hibernate_timeout ('0' = off)")
    ap.add_argument('--timeout', type=float, default=120.0)
    args = ap.parse_args()

    n = args.mailboxes
    extra = f"""
service imap {{
  process_limit = {4 * n + 64}
}}
service imap-login {{
  process_min_avail = 4
}}
"""
    dovecot = Dovecot(users=n, hibernate_timeout=args.hibernate, extra_config=extra)
    hook = WebhookReceiver('bench-secret')
    service = None
    try:
        dovecot.start()
        hook.start()
        service = Service(hook.url, 'bench-secret', fast=False, log_level=os.environ.get('EL_BENCH_LOG', 'warn'))
        service.start()
        users = [f'user{i}' for i in range(1, n + 1)]
        t0 = time.monotonic()
        for u in users:
            service.add_mailbox(mailbox_payload(dovecot, u, mailbox_id=u, security='none'))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = [service.get_mailbox(u)['state'] for u in users]
            if all(s == 'idle' for s in states):
                break
            time.sleep(0.2)
        else:
            raise SystemExit(f'not all mailboxes idle: {states}')
        print(f'{n} mailboxes registered and idle in {time.monotonic() - t0:.2f}s', flush=True)

        stop_at = time.monotonic() + args.timeout + 60
        bare = {u: BareIdle(dovecot, u, stop_at) for u in users}
        for b in bare.values():
            b.start()
        time.sleep(1.0)

        injected = {}  # (user, uid) -> LMTP acceptance time
        per_user = {u: 0 for u in users}
        interval = 1.0 / args.rate
        start = time.monotonic()
        for i in range(args.emails):
            u = users[i % n]
            per_user[u] += 1
            msg = make_message(f'bench {u} #{per_user[u]}', to_addr=dovecot.address(u),
                               body='x' * 2000 + '\n')
            target = start + i * interval
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            dovecot.inject(u, msg)
            injected[(u, per_user[u])] = time.monotonic()
        print(f'{args.emails} emails injected in {time.monotonic() - start:.2f}s', flush=True)

        ok = hook.wait_for(lambda ds: len({d.event_id for d in ds
                                           if d.type == 'message.new' and d.accepted})
                           >= args.emails, args.timeout, what='all messages')
        arrivals = {}
        for d in hook.deliveries():
            if d.type == 'message.new' and d.accepted:
                key = (d.json['mailbox_id'], d.data['uid'])
                arrivals.setdefault(key, d.arrived)
        total, floor, overhead = [], [], []
        outliers = []
        missing = 0
        for key, t_in in injected.items():
            t_out = arrivals.get(key)
            if t_out is None:
                missing += 1
                continue
            total.append((t_out - t_in) * 1000)
            t_exists = bare[key[0]].exists_time(key[1])
            if t_exists is not None:
                floor.append((t_exists - t_in) * 1000)
                overhead.append((t_out - t_exists) * 1000)
                if t_out - t_exists > 0.1:
                    outliers.append(f'{key[0]}#{key[1]}: floor {(t_exists - t_in) * 1000:.0f} ms, '
                                    f'webhook {(t_out - t_in) * 1000:.0f} ms')
        print()
        print(f'mailboxes={n} emails={args.emails} rate={args.rate}/s '
              f'hibernate={args.hibernate} delivered={len(total)} missing={missing}')
        print(summary('LMTP accepted -> webhook', total))
        print(summary('LMTP accepted -> bare IDLE EXISTS', floor))
        print(summary('paired: webhook - same email EXISTS', overhead))
        print(f'service overhead over the floor (quantile difference): '
              f'p50=+{pct(total, 50) - pct(floor, 50):.2f} ms  '
              f'p90=+{pct(total, 90) - pct(floor, 90):.2f} ms  '
              f'p99=+{pct(total, 99) - pct(floor, 99):.2f} ms')
        if outliers:
            print(f'{len(outliers)} emails over 100 ms of overhead: ' + '; '.join(outliers[:20]))
        if not ok or missing:
            print('NOT ALL MESSAGES ARRIVED', file=sys.stderr)
            return 1
        return 0
    finally:
        if service:
            service.cleanup()
        hook.stop()
        dovecot.cleanup()


if __name__ == '__main__':
    sys.exit(main())
