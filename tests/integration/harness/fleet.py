"""A fleet for the scale-out tests: one private Dovecot with many users, one Redis, one
RabbitMQ (when asked), one webhook receiver, and several email-listener nodes sharing them, each
with its role and node id. On failure the logs of every node are printed.

Standard library only; every wait is bounded.
"""

import base64
import collections
import os
import re
import sys
import threading
import time
import unittest
import uuid

from harness.base import log
from harness.dovecot import Dovecot, make_message, wait_until
from harness.redis import RedisServer
from harness.service import Service, mailbox_payload, require_binary
from harness.webhook import WebhookReceiver

# Time bounds of the scenarios are multiplied by this: scripts/test.sh sets 3 for the pass with
# AddressSanitizer, where every node is several times slower (speed is bench/'s business).
TIME_FACTOR = float(os.environ.get('ELTEST_TIME_FACTOR') or 1)

LEASE = '4s'  # short, so that take-overs happen within a test's time (sanitized builds too)


class FleetCase(unittest.TestCase):
    users = 6
    with_rabbitmq = True
    redis_appendonly = False
    redis_password = 'redis-' + uuid.uuid4().hex[:8]

    def setUp(self):
        require_binary()
        self.secret = 'whsec-' + uuid.uuid4().hex
        self.key = base64.b64encode(os.urandom(32)).decode()
        # Dozens of sessions log in at once on a take-over. Dovecot's default login mode forks a
        # process per login (about ten a second on this loaded 2-core machine, and "BYE
        # Connection queue full" past 100); its high-performance mode, as large installations
        # run it, measures the service rather than fork().
        self.dovecot = Dovecot(users=self.users, extra_config=(
            'default_process_limit = 1000\n'
            'service imap-login {\n  service_count = 0\n  client_limit = 1000\n'
            '  process_min_avail = 2\n}'))
        self.addCleanup(self.dovecot.cleanup)
        self.dovecot.start()
        self.redis = RedisServer(password=self.redis_password, appendonly=self.redis_appendonly)
        self.addCleanup(self.redis.cleanup)
        self.redis.start()
        self.rabbit = None
        if self.with_rabbitmq:
            from harness.rabbitmq import RabbitMQServer  # pylint: disable=import-outside-toplevel
            self.rabbit = RabbitMQServer()
            self.addCleanup(self.rabbit.cleanup)
            self.rabbit.start()
        self.hook = WebhookReceiver(self.secret).start()
        self.addCleanup(self.hook.stop)
        self.nodes = {}
        self.addCleanup(self._cleanup_nodes)
        self.addCleanup(self._dump_on_failure)  # cleanups run last-in first-out: this one first
        log(f'{self.id()}: {self.dovecot.describe()} redis={self.redis.port} '
            f'rabbitmq={self.rabbit.port if self.rabbit else None} hook={self.hook.url}')

    # ---- nodes -------------------------------------------------------------------------------
    def node_args(self, name, role, extra=()):
        args = ['--store', self.redis.url(), '--role', role, '--node-id', name, '--lease', LEASE,
                '--threads', '2', '--connect-timeout', '15s']
        if self.rabbit:
            args += ['--queue', self.rabbit.url(), '--task-max-wait', '5s']
        return args + list(extra)

    def start_node(self, name, role='api', extra=(), env=None, start=True):
        environment = {'EL_SECRET_KEY': self.key}
        environment.update(env or {})
        svc = Service(self.hook.url, self.secret, state_file=False,
                      extra_args=self.node_args(name, role, extra), env=environment)
        if name in self.nodes:
            self.nodes[name].cleanup()
        self.nodes[name] = svc
        if start:
            svc.start()
        return svc

    def _cleanup_nodes(self):
        for svc in self.nodes.values():
            svc.cleanup()

    def _dump_on_failure(self):
        result = getattr(getattr(self, '_outcome', None), 'result', None)
        failed = any(t is self for name in ('errors', 'failures')
                     for t, _ in getattr(result, name, None) or [])
        if not failed and not os.environ.get('ELTEST_VERBOSE'):
            return
        noise = ('http_request', 'webhook_delivered', 'message_delivered')
        for name, svc in self.nodes.items():
            sys.stderr.write(f'\n===== {self.id()}: node {name} log ({svc.log_path}, without '
                             f'{", ".join(noise)}) =====\n')
            lines = [l for l in svc.log_text().splitlines() if not any(n in l for n in noise)]
            sys.stderr.write('\n'.join(lines)[-15000:])
        if self.rabbit:
            sys.stderr.write('\n===== rabbitmq log (tail) =====\n')
            sys.stderr.write(self.rabbit.log_text()[-3000:])
        sys.stderr.write(f'\n===== webhook deliveries =====\n{self.hook.summary(40)}\n')
        sys.stderr.flush()

    # ---- mailboxes and mail ------------------------------------------------------------------
    def register_all(self, via, count):
        ids = []
        for i in range(1, count + 1):
            user = f'user{i}'
            body = via.add_mailbox(mailbox_payload(self.dovecot, user, mailbox_id=f'mb-{user}'))
            ids.append(body['id'])
        return ids

    def wait_all_idle(self, via, ids, timeout=60):
        deadline = time.monotonic() + timeout
        pending = set(ids)
        while pending and time.monotonic() < deadline:
            for mid in sorted(pending):
                r = via.request('GET', f'/v1/mailboxes/{mid}')
                if r.status == 200 and r.json.get('state') == 'idle':
                    pending.discard(mid)
            if pending:
                time.sleep(0.2)
        if pending:
            one = sorted(pending)[0]
            views = {name: svc.request('GET', f'/v1/mailboxes/{one}').text
                     for name, svc in self.nodes.items() if svc.running}
            self.fail(f'{len(pending)} mailboxes not idle after {timeout}s: '
                      f'{sorted(pending)[:10]}; {one} seen by each node: {views}')

    def inject(self, user, subject):
        self.dovecot.inject(user, make_message(subject, to_addr=self.dovecot.address(user)))

    def start_mail_flow(self, tag, total, interval):
        """Injects `total` emails round-robin into user1..userN (N = self.users) from a thread,
        one every `interval` s. Returns the flow: .subjects (mailbox id -> subjects injected so
        far), .finish(timeout) joins it and fails the test on an injection error."""
        return MailFlow(self, tag, total, interval).start()

    def wait_subjects(self, subjects_by_mailbox, timeout):
        """Waits until every (mailbox, subject) was accepted by the webhook."""
        def missing():
            got = collections.defaultdict(set)
            for m in self.hook.messages():
                got[m.json.get('mailbox_id')].add(m.data.get('subject'))
            return {(mid, s) for mid, subjects in subjects_by_mailbox.items() for s in subjects
                    if s not in got[mid]}
        deadline = time.monotonic() + timeout
        left = missing()
        while left and time.monotonic() < deadline:
            time.sleep(0.25)
            left = missing()
        self.assertFalse(left, f'{len(left)} emails not delivered after {timeout}s: '
                               f'{sorted(left)[:10]}')

    def duplicate_report(self):
        """(accepted deliveries, distinct emails, emails delivered more than once). Fails if one
        email was ever delivered under two event ids."""
        ids_by_email = collections.defaultdict(set)
        count = collections.Counter()
        for m in self.hook.messages():
            key = (m.json.get('mailbox_id'), m.data.get('folder'), m.data.get('uidvalidity'),
                   m.data.get('uid'))
            ids_by_email[key].add(m.event_id)
            count[key] += 1
        for key, ids in ids_by_email.items():
            self.assertEqual(len(ids), 1, f'email {key} delivered under several event ids: {ids}')
        dups = sum(1 for n in count.values() if n > 1)
        return sum(count.values()), len(count), dups

    @staticmethod
    def metric(svc, name):
        text = svc.metrics().text
        m = re.search(rf'^{re.escape(name)} (\d+(?:\.\d+)?)$', text, re.M)
        return float(m.group(1)) if m else None

    def nodes_view(self, via):
        r = via.request('GET', '/v1/nodes')
        self.assertEqual(r.status, 200, r.text)
        return {n['id']: n for n in r.json['items']}


class MailFlow(threading.Thread):
    def __init__(self, case, tag, total, interval):
        super().__init__(daemon=True, name=f'mail-flow-{tag}')
        self.case, self.tag, self.total, self.interval = case, tag, total, interval
        self.subjects = {f'mb-user{i}': set() for i in range(1, case.users + 1)}
        self.errors = []

    def run(self):
        try:
            for n in range(self.total):
                i = n % self.case.users + 1
                s = f'{self.tag} {n}'
                self.case.inject(f'user{i}', s)
                self.subjects[f'mb-user{i}'].add(s)
                time.sleep(self.interval)
        except Exception as exc:  # pylint: disable=broad-except
            self.errors.append(exc)

    def start(self):
        super().start()
        return self

    def finish(self, timeout):
        self.join(timeout=timeout)
        self.case.assertFalse(self.is_alive(), f'{self.name} did not finish in {timeout}s')
        self.case.assertEqual(self.errors, [])


__all__ = ['FleetCase', 'log', 'wait_until', 'LEASE', 'TIME_FACTOR']
