"""The harness itself, without the service: the private Dovecot (logins over plain, STARTTLS and
IMAPS with the test CA, LMTP injection, IDLE pushes, restart, auth log) and the webhook receiver.
Prints the server's IDLE notification latency, the floor under the service's."""

import http.client
import imaplib
import json
import ssl
import time
import unittest

from harness.dovecot import Dovecot, make_message
from harness.webhook import WebhookReceiver, sign


class DovecotHarnessTest(unittest.TestCase):
    def setUp(self):
        self.d = Dovecot(users=2)
        self.addCleanup(self.d.cleanup)
        self.d.start()

    def test_logins_and_tls(self):
        for security in ('none', 'starttls', 'tls'):
            c = self.d.imap('user1', security=security)
            self.assertEqual(c.state, 'AUTH')
            c.logout()
        c = imaplib.IMAP4_SSL('127.0.0.1', self.d.imaps_port, timeout=10,
                              ssl_context=self.d.client_tls_context())
        c.login('user2', 'password2')
        c.logout()
        with self.assertRaises(ssl.SSLCertVerificationError):
            imaplib.IMAP4_SSL('localhost', self.d.imaps_port, timeout=10,
                              ssl_context=ssl.create_default_context())
        mark = self.d.log_mark()
        with self.assertRaises(imaplib.IMAP4.error):
            self.d.imap('user1', password='wrong')
        self.assertEqual(self.d.failed_logins('user1', since=mark), 1)

    def test_inject_idle_restart(self):
        self.d.inject('user1', make_message('first'))
        self.assertEqual(self.d.unseen_uids('user1'), [1])
        uidvalidity = self.d.uidvalidity('user1')
        w = self.d.idle_watcher('user1')
        try:
            w.start()
            t0 = time.monotonic()
            self.d.inject('user1', make_message('second'))
            t1 = time.monotonic()
            got = w.wait_exists(10)
            self.assertIsNotNone(got, 'no EXISTS while in IDLE')
            print(f'\nIDLE floor: LMTP {1000 * (t1 - t0):.0f} ms, EXISTS '
                  f'{1000 * (got[1] - t1):.0f} ms after LMTP accepted', flush=True)
            self.assertTrue(w.done().split()[1] == b'OK')
        finally:
            w.close()
        self.d.stop()
        self.d.inject_offline('user1', make_message('offline'))
        self.d.start()
        self.assertEqual(self.d.uids('user1'), [1, 2, 3])
        self.assertEqual(self.d.uidvalidity('user1'), uidvalidity)
        self.assertEqual(self.d.unseen_uids('user1'), [1, 2, 3])

    def test_no_auth_penalty(self):
        # What test_auth_failure relies on: without the per-IP penalty a client's failed logins
        # are not slowed down by the server, so a retry loop would show up in the count.
        with Dovecot(users=1, auth_penalty=False, auth_failure_delay=0) as d:
            t0 = time.monotonic()
            for _ in range(4):
                with self.assertRaises(imaplib.IMAP4.error):
                    d.imap('user1', security='none', host='127.0.0.1', password='wrong')
            self.assertLess(time.monotonic() - t0, 4.0)
            self.assertEqual(len(d.failed_login_times('user1')), 4)

    def test_add_user(self):
        self.d.add_user('extra', 'extra-pw')
        self.d.inject('extra', make_message('for extra', to_addr='extra@localhost'))
        self.assertEqual(self.d.message_count('extra'), 1)


class WebhookHarnessTest(unittest.TestCase):
    def test_signature_status_and_down(self):
        h = WebhookReceiver('s3cret').start()
        self.addCleanup(h.stop)

        def post(body, sig=None):
            raw = json.dumps(body).encode()
            c = http.client.HTTPConnection('127.0.0.1', h.port, timeout=5)
            try:
                c.request('POST', '/hook', raw, {
                    'X-Email-Listener-Signature': sig or sign('s3cret', raw),
                    'X-Email-Listener-Event-Id': body['id']})
                r = c.getresponse()
                r.read()
                return r.status
            finally:
                c.close()
        self.assertEqual(post({'id': 'a', 'type': 'message.new', 'data': {'uid': 1}}), 200)
        self.assertEqual(post({'id': 'b', 'type': 'message.new', 'data': {'uid': 2}}, 'sha256=0'), 200)
        h.set_status(503)
        self.assertEqual(post({'id': 'c', 'type': 'message.new', 'data': {'uid': 3}}), 503)
        port = h.port
        h.stop()
        with self.assertRaises(ConnectionRefusedError):
            post({'id': 'c', 'type': 'message.new', 'data': {'uid': 3}})
        h.set_status(200)
        h.start()
        self.assertEqual(h.port, port)
        self.assertEqual(post({'id': 'c', 'type': 'message.new', 'data': {'uid': 3}}), 200)
        self.assertEqual([(d.event_id, d.status, d.signature_ok) for d in h.deliveries()],
                         [('a', 200, True), ('b', 200, False), ('c', 503, True), ('c', 200, True)])
        self.assertEqual([d.event_id for d in h.wait_messages(3, 1)], ['a', 'b', 'c'])


if __name__ == '__main__':
    unittest.main()
