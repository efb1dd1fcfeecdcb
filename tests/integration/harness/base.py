"""Common set-up for the scenario tests: one private Dovecot, one webhook receiver and one
email-listener per test, torn down afterwards; on failure the logs of all three are printed."""

import os
import sys
import time
import unittest
import uuid

from harness.dovecot import Dovecot, make_message, wait_until
from harness.service import Service, mailbox_payload, require_binary
from harness.webhook import WebhookReceiver

__all__ = ['IntegrationCase', 'Dovecot', 'log', 'make_message', 'wait_until']


def log(msg):
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


class IntegrationCase(unittest.TestCase):
    dovecot_options = {}
    service_options = {}
    start_service = True

    def setUp(self):
        require_binary()
        self.secret = 'whsec-' + uuid.uuid4().hex
        self.dovecot = Dovecot(**self.dovecot_options)
        self.addCleanup(self.dovecot.cleanup)
        self.dovecot.start()
        self.hook = WebhookReceiver(self.secret).start()
        self.addCleanup(self.hook.stop)
        self.service = Service(self.hook.url, self.secret, **self.service_options)
        self.addCleanup(self.service.cleanup)
        self.addCleanup(self._dump_on_failure)  # cleanups run last-in first-out: this one first
        if self.start_service:
            self.service.start()
        log(f'{self.id()}: {self.dovecot.describe()} service={self.service.base_url} '
            f'hook={self.hook.url}')

    def _failed(self):
        # unittest resets _outcome.success inside each cleanup; the result lists are reliable.
        result = getattr(getattr(self, '_outcome', None), 'result', None)
        for name in ('errors', 'failures'):
            for test, _ in getattr(result, name, None) or []:
                if test is self or getattr(test, 'test_case', None) is self:
                    return True
        return False

    def _dump_on_failure(self):
        if not self._failed() and not os.environ.get('ELTEST_VERBOSE'):
            return
        sys.stderr.write(f'\n===== {self.id()} failed: service log ({self.service.log_path}) =====\n')
        sys.stderr.write(self.service.log_text()[-20000:])
        sys.stderr.write('\n===== dovecot log (last 6000 chars) =====\n')
        sys.stderr.write(self.dovecot.log_text()[-6000:])
        sys.stderr.write(f'\n===== webhook deliveries =====\n{self.hook.summary(60)}\n')
        sys.stderr.flush()

    # ---- helpers -----------------------------------------------------------------------------
    def register(self, user='user1', wait_idle=True, timeout=30, **kw):
        """Registers user's mailbox; by default waits until it is idle (baseline taken)."""
        body = self.service.add_mailbox(mailbox_payload(self.dovecot, user, **kw))
        self.assertIn('id', body, body)
        if wait_idle:
            self.service.wait_state(body['id'], 'idle', timeout=timeout)
        return body['id']

    def inject(self, user, subject, **kw):
        kw.setdefault('to_addr', self.dovecot.address(user))
        self.dovecot.inject(user, make_message(subject, **kw))

    def assert_signed(self, deliveries):
        for d in deliveries:
            self.assertTrue(d.signature_ok, f'bad signature on event {d.event_id}: '
                            f'{d.headers.get("x-email-listener-signature")!r}')
            self.assertTrue(d.event_id, f'no X-Email-Listener-Event-Id on {d.json}')
            self.assertEqual(d.event_id, d.json.get('id'), 'event id header differs from body id')
