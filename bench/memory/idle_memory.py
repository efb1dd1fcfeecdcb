#!/usr/bin/python3
"""Memory benchmark: N idle mailboxes on plain IMAP (Dovecot with imap_hibernate_timeout), the
service's resident memory (VmRSS) before and after, per mailbox.

usage: bench/memory/idle_memory.py [--mailboxes 1000] [--hibernate 5s] [--settle 15]
                                   [--security none|tls]
Needs build/email-listener and Dovecot. Only 127.0.0.1; every wait is bounded.
"""

import argparse
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'tests', 'integration'))

from harness.dovecot import Dovecot  # noqa: E402
from harness.service import Service, mailbox_payload  # noqa: E402
from harness.webhook import WebhookReceiver  # noqa: E402


def rss_kib(pid):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--mailboxes', type=int, default=1000)
    ap.add_argument('--hibernate', default='5s')
    ap.add_argument('--settle', type=float, default=15.0, help='seconds idle before measuring')
    ap.add_argument('--security', default='none', choices=['none', 'tls'],
                    help='plain IMAP, or implicit TLS with the test CA')
    args = ap.parse_args()
    n = args.mailboxes
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    extra = f"""
default_client_limit = {4 * n + 100}
default_vsz_limit = 0
service imap {{
  process_limit = {2 * n + 64}
}}
service imap-login {{
  client_limit = {2 * n + 64}
  process_min_avail = 2
  service_count = 0
}}
service imap-hibernate {{
  client_limit = {2 * n + 64}
}}
"""
    dovecot = Dovecot(users=n, hibernate_timeout=args.hibernate, extra_config=extra)
    hook = WebhookReceiver('bench-secret')
    service = None
    try:
        dovecot.start(timeout=60)
        hook.start()
        service = Service(hook.url, 'bench-secret', fast=False, log_level=os.environ.get('EL_BENCH_LOG', 'warn'))
        service.start()
        time.sleep(1.0)
        pid = service.proc.pid
        before = rss_kib(pid)
        users = [f'user{i}' for i in range(1, n + 1)]
        t0 = time.monotonic()
        for u in users:
            service.add_mailbox(mailbox_payload(dovecot, u, mailbox_id=u, security=args.security))
        deadline = time.monotonic() + 180
        idle = 0
        while time.monotonic() < deadline:
            page, cursor, idle = None, '', 0
            while True:
                r = service.request('GET', f'/v1/mailboxes?limit=1000&cursor={cursor}').json
                idle += sum(1 for m in r['items'] if m['state'] == 'idle')
                cursor = r.get('next_cursor')
                if not cursor:
                    break
            if idle == n:
                break
            time.sleep(1.0)
        print(f'{idle}/{n} mailboxes idle after {time.monotonic() - t0:.1f}s', flush=True)
        time.sleep(args.settle)
        after = rss_kib(pid)
        print(f'hibernated imap sessions: {dovecot.hibernated()}')
        print(f'security={args.security} service RSS before={before} KiB after={after} KiB '
              f'mailboxes={n}')
        print(f'RSS per mailbox (total/N):        {after / n:.1f} KiB')
        print(f'RSS per mailbox ((after-before)/N): {(after - before) / n:.1f} KiB')
        return 0 if idle == n else 1
    finally:
        if service:
            service.cleanup()
        hook.stop()
        dovecot.cleanup()


if __name__ == '__main__':
    sys.exit(main())
