"""Scenario 7: the HTTP API over the wire: bearer token, validation errors with the field, 404,
413 for an oversized body, the mailbox lifecycle, and /metrics."""

import re
import socket
import time
import unittest
import uuid

from harness.base import IntegrationCase, log, wait_until
from harness.service import mailbox_payload

TOKEN = 'api-token-' + uuid.uuid4().hex


class ApiTest(IntegrationCase):
    service_options = {'api_token': TOKEN}

    def assert_error(self, r, status, field=None):
        self.assertEqual(r.status, status, r)
        err = (r.json or {}).get('error')
        self.assertIsInstance(err, dict, f'no {{"error": {{...}}}} body: {r}')
        self.assertTrue(err.get('code'), r)
        self.assertTrue(err.get('message'), r)
        if field is not None:
            self.assertIn(field, err.get('field') or '', f'error.field should name {field!r}: {r}')
        return err

    def test_token_required(self):
        s = self.service
        self.assert_error(s.request('GET', '/v1/mailboxes/x', token=None), 401)
        self.assert_error(s.request('GET', '/v1/mailboxes/x', token='wrong'), 401)
        self.assert_error(s.request('POST', '/v1/mailboxes',
                                    mailbox_payload(self.dovecot, 'user1'), token=None), 401)
        self.assertEqual(s.request('GET', '/healthz', token=None).status, 200)
        self.assertEqual(s.request('GET', '/readyz').status, 200)
        # Prometheus scrapes without credentials.
        self.assertEqual(s.request('GET', '/metrics', token=None).status, 200)

    def test_validation_errors(self):
        s = self.service
        r = s.request('POST', '/v1/mailboxes', raw=b'{"email": ')
        self.assert_error(r, 400)
        body = mailbox_payload(self.dovecot, 'user1')
        del body['imap']['host']
        err = self.assert_error(s.request('POST', '/v1/mailboxes', body), 400, 'host')
        log(f'missing host: {err}')
        self.assertIn('host', err['message'], f'the message should name the missing field: {err}')
        body = mailbox_payload(self.dovecot, 'user1')
        body['imap']['security'] = 'bogus'
        self.assert_error(s.request('POST', '/v1/mailboxes', body), 400, 'security')
        body = mailbox_payload(self.dovecot, 'user1')
        body['imap']['port'] = 'not-a-port'
        self.assert_error(s.request('POST', '/v1/mailboxes', body), 400, 'port')
        body = mailbox_payload(self.dovecot, 'user1', since='yesterday-ish')
        self.assert_error(s.request('POST', '/v1/mailboxes', body), 400, 'since')

    def test_not_found(self):
        self.assert_error(self.service.request('GET', '/v1/mailboxes/no-such-mailbox'), 404)
        self.assert_error(self.service.request('DELETE', '/v1/mailboxes/no-such-mailbox'), 404)

    def test_body_too_large(self):
        size = 2 * 1024 * 1024
        head = (f'POST /v1/mailboxes HTTP/1.1\r\nHost: 127.0.0.1:{self.service.port}\r\n'
                f'Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n'
                f'Content-Length: {size}\r\n\r\n').encode()
        payload = b'{"email": "' + b'a' * (size - 13) + b'"}'
        self.assertEqual(len(payload), size)
        answer = b''
        with socket.create_connection(('127.0.0.1', self.service.port), timeout=10) as sock:
            try:
                sock.sendall(head)
                sock.sendall(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer and close before reading everything
            try:
                while len(answer) < 65536:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
                    if b'\r\n\r\n' in answer and b'"error"' in answer:
                        break
            except (ConnectionResetError, socket.timeout):
                pass
        status_line = answer.split(b'\r\n', 1)[0]
        self.assertRegex(status_line.decode(errors='replace'), r'^HTTP/1\.[01] 413',
                         f'answer to a 2 MiB body: {answer[:300]!r}')
        self.assertTrue(self.service.running, 'service died on a large body')

    def test_lifecycle_and_metrics(self):
        s = self.service
        mid = f'mbx-{uuid.uuid4().hex[:8]}'
        r = s.request('POST', '/v1/mailboxes', mailbox_payload(self.dovecot, 'user1', mailbox_id=mid))
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json.get('id'), mid)
        self.assertIn(r.json.get('state'), ('connecting', 'idle', 'polling', 'backoff'), r)
        r2 = s.request('POST', '/v1/mailboxes', mailbox_payload(self.dovecot, 'user1', mailbox_id=mid))
        self.assert_error(r2, 409)
        st = s.wait_state(mid, 'idle', 30)
        self.assertEqual(st.get('id'), mid)
        self.assertEqual(st.get('email'), 'user1@localhost')
        self.assertEqual([f.get('name') for f in st.get('folders', [])], ['INBOX'], st)
        self.assertIsInstance(st.get('delivered'), int, st)
        self.assertTrue(st.get('connected_since'), st)
        self.assertNotIn('password1', s.request('GET', f'/v1/mailboxes/{mid}').text)

        self.inject('user1', 'metrics please')
        self.hook.wait_messages(1, 30, mailbox_id=mid)

        def delivered_metric():
            text = s.metrics().text
            m = re.search(r'^el_events_delivered_total(\{[^}]*\})?\s+([0-9.e+]+)', text, re.M)
            return m and float(m.group(2)) >= 1 and text
        text = wait_until(delivered_metric, 10, what='el_events_delivered_total >= 1')
        self.assertIn('# TYPE el_events_delivered_total counter', text)

        self.assertEqual(s.delete_mailbox(mid).status, 204)
        self.assert_error(s.request('GET', f'/v1/mailboxes/{mid}'), 404)
        self.assert_error(s.delete_mailbox(mid), 404)
        # After DELETE nothing more is delivered for it.
        before = len(self.hook.messages(mid))
        self.inject('user1', 'after delete')
        time.sleep(2)
        self.assertEqual(len(self.hook.messages(mid)), before)


if __name__ == '__main__':
    unittest.main()
