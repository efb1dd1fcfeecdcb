#!/usr/bin/python3
"""Scale-out benchmarks (issue 3), on loopback with private servers:

  memory      Redis memory per mailbox: N mailboxes registered through one node with a Redis
              store (sealed credentials, one folder checkpoint, lease held, state published);
              MEMORY USAGE of each mailbox's keys, and used_memory growth over N.
  throughput  emails per second through a 3-node fleet (2 api, 1 worker; Redis + RabbitMQ)
              against one node in `all` mode (memory store, in-process queue): the nodes are
              frozen (SIGSTOP) while M emails of ~10 KB are injected over LMTP into K mailboxes,
              then thawed; time from SIGCONT to the last webhook acceptance.
  failover    time from SIGKILL of an api node to all of its mailboxes idle on the other node
              (lease 3 s), median of R runs.

usage: bench/fleet/fleet_bench.py memory [--mailboxes 1000]
       bench/fleet/fleet_bench.py throughput [--mailboxes 20] [--emails 1000]
       bench/fleet/fleet_bench.py failover [--mailboxes 20] [--runs 5]
Needs build/email-listener (or $EMAIL_LISTENER_BIN) and scripts/install-test-deps.sh. Every loop
is bounded in count and time.
"""

import argparse
import base64
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'tests', 'integration'))

from harness.dovecot import Dovecot, make_message, wait_until  # noqa: E402
from harness.redis import RedisServer  # noqa: E402
from harness.service import Service, mailbox_payload  # noqa: E402
from harness.webhook import WebhookReceiver  # noqa: E402

SECRET = 'bench-secret'
KEY = base64.b64encode(os.urandom(32)).decode()
FLEET_FLAGS = ['--lease', '3s', '--threads', '2', '--log-level', 'info']


def node(hook, redis, name, role, rabbit=None, extra=()):
    args = ['--store', redis.url(), '--role', role, '--node-id', name] + FLEET_FLAGS
    if rabbit:
        args += ['--queue', rabbit.url()]
    return Service(hook.url, SECRET, state_file=False, log_level='info', fast=True,
                   extra_args=args + list(extra), env={'EL_SECRET_KEY': KEY})


def body_10k(i):
    line = f'Line {i:06d} of a ten kilobyte benchmark email, plain text, nothing special.\n'
    return line * (10240 // len(line))


def wait_idle(svc, ids, timeout):
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        for mid in list(pending):
            r = svc.request('GET', f'/v1/mailboxes/{mid}')
            if r.status == 200 and r.json.get('state') == 'idle':
                pending.discard(mid)
        time.sleep(0.2)
    if pending:
        raise SystemExit(f'{len(pending)} mailboxes not idle after {timeout}s')


# ---- memory ----------------------------------------------------------------------------------
def bench_memory(args):
    hook = WebhookReceiver(SECRET).start()
    with RedisServer() as redis:
        before = int(redis.cli('INFO', 'memory').split('used_memory:')[1].split()[0])
        svc = node(hook, redis, 'mem-1', 'all')
        svc.start()
        try:
            for i in range(args.mailboxes):
                # An unreachable server: the mailbox is held (lease) and its state published.
                svc.add_mailbox({'id': f'mailbox-{i:06d}', 'email': f'user{i}@example.test',
                                 'imap': {'host': '127.0.0.1', 'port': 1, 'security': 'tls',
                                          'username': f'user{i}@example.test',
                                          'password': 'correct horse battery staple'},
                                 'webhook': {'url': hook.url, 'secret': 'per-mailbox-secret'}})
            time.sleep(2)  # states published, leases held
            # A checkpoint for every mailbox, as a served folder has.
            for i in range(args.mailboxes):
                redis.cli('HSET', f'el:mbx:mailbox-{i:06d}', 'cp:INBOX', '1700000000:4512')
            sample = [f'mailbox-{i:06d}' for i in range(0, args.mailboxes,
                                                         max(1, args.mailboxes // 50))]
            per = []
            for mid in sample:
                h = int(redis.cli('MEMORY', 'USAGE', f'el:mbx:{mid}', 'SAMPLES', '0'))
                lease = redis.cli('MEMORY', 'USAGE', f'el:lease:{mid}').strip()
                per.append(h + (int(lease) if lease.isdigit() else 0))
            zset = int(redis.cli('MEMORY', 'USAGE', 'el:mailboxes', 'SAMPLES', '0'))
            after = int(redis.cli('INFO', 'memory').split('used_memory:')[1].split()[0])
            owned = sum(1 for i in sample
                        if redis.cli('GET', f'el:lease:mailbox-{i.split("-")[1]}').strip())
        finally:
            svc.stop()
            svc.cleanup()
            hook.stop()
    print(f'mailboxes: {args.mailboxes}; sampled {len(sample)} ({owned} with a lease)')
    print(f'MEMORY USAGE hash+lease per mailbox: median {statistics.median(per):.0f} B, '
          f'max {max(per)} B; id zset share {zset / args.mailboxes:.0f} B')
    print(f'per mailbox incl. zset share: {statistics.median(per) + zset / args.mailboxes:.0f} B '
          f'(budget 2048)')
    print(f'used_memory growth: {(after - before) / args.mailboxes:.0f} B per mailbox')


# ---- throughput ------------------------------------------------------------------------------
def run_load(hook, dovecot, via, nodes, mailboxes, emails):
    """Registers the mailboxes, freezes every node (SIGSTOP), injects the emails, thaws the
    nodes and times the drain: from SIGCONT to the last webhook acceptance. The injection (LMTP
    into Dovecot on the same 2 cores) is not timed, so the figure is the service's own
    download-parse-deliver rate, not the injector's."""
    ids = [via.add_mailbox(mailbox_payload(dovecot, f'user{i}', mailbox_id=f'mb-user{i}'))['id']
           for i in range(1, mailboxes + 1)]
    wait_idle(via, ids, 120)
    time.sleep(2)
    start_count = len({d.event_id for d in hook.messages()})
    msgs = [make_message(f'load {n}', body=body_10k(n),
                         to_addr=dovecot.address(f'user{n % mailboxes + 1}'))
            for n in range(emails)]
    for n in nodes:
        n.pause()
    try:
        errors = []

        def injector(part):
            try:
                for n in range(part, emails, 4):
                    dovecot.inject(f'user{n % mailboxes + 1}', msgs[n])
            except Exception as exc:  # pylint: disable=broad-except
                errors.append(exc)
        threads = [threading.Thread(target=injector, args=(p,), daemon=True) for p in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        if errors:
            raise SystemExit(f'injection failed: {errors[0]}')
    finally:
        t0 = time.monotonic()
        for n in nodes:
            n.resume()
    hook.wait_for(lambda _: len({d.event_id for d in hook.messages()}) - start_count >= emails,
                  600, f'{emails} emails delivered')
    return time.monotonic() - t0


def bench_throughput(args):
    from harness.rabbitmq import RabbitMQServer  # pylint: disable=import-outside-toplevel
    results = {}
    # One node, embedded default.
    with Dovecot(users=args.mailboxes) as dovecot:
        hook = WebhookReceiver(SECRET).start()
        svc = Service(hook.url, SECRET, state_file=False, log_level='info',
                      extra_args=['--threads', '2'])
        svc.start()
        try:
            results['1 node (all, memory, inproc)'] = run_load(hook, dovecot, svc, [svc],
                                                               args.mailboxes, args.emails)
        finally:
            svc.stop()
            svc.cleanup()
            hook.stop()
    # Three nodes.
    with Dovecot(users=args.mailboxes) as dovecot, RedisServer() as redis, \
            RabbitMQServer() as rabbit:
        hook = WebhookReceiver(SECRET).start()
        # A long lease: the nodes are frozen while the emails are injected.
        long_lease = ['--lease', '300s']
        nodes = [node(hook, redis, 'api-1', 'api', rabbit, long_lease),
                 node(hook, redis, 'api-2', 'api', rabbit, long_lease),
                 node(hook, redis, 'worker-1', 'worker', rabbit, long_lease)]
        for n in nodes:
            n.start()
        try:
            time.sleep(2)
            results['3 nodes (2 api + 1 worker, Redis, RabbitMQ)'] = run_load(
                hook, dovecot, nodes[0], nodes, args.mailboxes, args.emails)
            consumed = nodes[2].metrics().text
            local = sum(float(line.split()[-1]) for n in nodes[:2]
                        for line in n.metrics().text.splitlines()
                        if line.startswith('el_tasks_run_locally_total '))
            worker_tasks = [line for line in consumed.splitlines()
                            if line.startswith('el_tasks_consumed_total ')]
            print(f'fleet: worker {worker_tasks}, tasks run on api nodes: {local:.0f}')
        finally:
            for n in nodes:
                n.stop()
                n.cleanup()
            hook.stop()
    print(f'{args.emails} emails of ~10 KB into {args.mailboxes} mailboxes')
    for name, elapsed in results.items():
        print(f'{name:<46} {args.emails / elapsed:7.1f} emails/s  (backlog drained in '
              f'{elapsed:.1f}s)')


# ---- failover --------------------------------------------------------------------------------
def bench_failover(args):
    times = []
    with Dovecot(users=args.mailboxes) as dovecot:
        for run in range(args.runs):
            hook = WebhookReceiver(SECRET).start()
            with RedisServer() as redis:
                a = node(hook, redis, 'api-1', 'api')
                b = node(hook, redis, 'api-2', 'api')
                a.start()
                b.start()
                try:
                    wait_until(lambda: len(b.request('GET', '/v1/nodes').json['items']) == 2, 20)
                    ids = [b.add_mailbox(mailbox_payload(dovecot, f'user{i}',
                                                         mailbox_id=f'mb-user{i}'))['id']
                           for i in range(1, args.mailboxes + 1)]
                    wait_idle(b, ids, 60)
                    time.sleep(3)
                    victims = [m for m in ids if b.get_mailbox(m)['owner'] == 'api-1']
                    t0 = time.monotonic()
                    a.kill()

                    def back():
                        return all(b.get_mailbox(m)['owner'] == 'api-2' and
                                   b.get_mailbox(m)['state'] == 'idle' for m in victims)
                    wait_until(back, 60, interval=0.05)
                    took = time.monotonic() - t0
                    times.append(took)
                    print(f'run {run + 1}: {len(victims)} mailboxes back after {took:.2f}s')
                finally:
                    a.cleanup()
                    b.stop()
                    b.cleanup()
                    hook.stop()
    print(f'failover after SIGKILL (lease 3s), {args.runs} runs: median '
          f'{statistics.median(times):.2f}s, min {min(times):.2f}s, max {max(times):.2f}s')


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest='cmd', required=True)
    m = sub.add_parser('memory')
    m.add_argument('--mailboxes', type=int, default=1000)
    t = sub.add_parser('throughput')
    t.add_argument('--mailboxes', type=int, default=20)
    t.add_argument('--emails', type=int, default=1000)
    f = sub.add_parser('failover')
    f.add_argument('--mailboxes', type=int, default=20)
    f.add_argument('--runs', type=int, default=5)
    args = p.parse_args()
    {'memory': bench_memory, 'throughput': bench_throughput, 'failover': bench_failover}[args.cmd](args)


if __name__ == '__main__':
    main()
