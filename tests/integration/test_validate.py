"""POST /v1/mailboxes/validate: connects and signs in with the given settings, stores nothing,
and tells a refused password, an unreachable host, a certificate problem and a timeout apart."""

import socket
import unittest

from harness.base import IntegrationCase
from harness.ports import free_port
from harness.service import mailbox_payload


class ValidateTest(IntegrationCase):
    # Dovecot answers a refused password after auth_failure_delay (2 s by default) and slows
    # later logins from the same address: both off, so that only the silent server times out.
    dovecot_options = {'auth_penalty': False, 'auth_failure_delay': '0'}
    service_options = {'extra_args': ['--validate-timeout', '3s']}

    def _validate(self, payload):
        r = self.service.request('POST', '/v1/mailboxes/validate', payload, timeout=30)
        self.assertEqual(r.status, 200, r.text)
        return r.json

    def test_four_distinct_answers_and_nothing_stored(self):
        ok = self._validate(mailbox_payload(self.dovecot, 'user1'))
        self.assertTrue(ok['valid'], ok)
        self.assertTrue(ok['imap']['ok'])
        self.assertGreaterEqual(ok['imap']['folders'], 1)
        self.assertNotIn('error', ok)

        wrong = self._validate(mailbox_payload(self.dovecot, 'user1', password='not-it'))
        self.assertFalse(wrong['valid'])
        self.assertEqual(wrong['error']['code'], 'auth_failed', wrong)
        self.assertNotIn('not-it', str(wrong))

        closed = mailbox_payload(self.dovecot, 'user1')
        closed['imap']['port'] = free_port()
        closed_r = self._validate(closed)
        self.assertFalse(closed_r['valid'])
        self.assertEqual(closed_r['error']['code'], 'unreachable', closed_r)

        # The test CA is not given: the server's certificate cannot be verified.
        bad_cert = self._validate(mailbox_payload(self.dovecot, 'user1', ca=False))
        self.assertFalse(bad_cert['valid'])
        self.assertEqual(bad_cert['error']['code'], 'tls_error', bad_cert)

        # A server that accepts the connection and never says a word.
        silent = socket.socket()
        silent.bind(('127.0.0.1', 0))
        silent.listen(5)
        self.addCleanup(silent.close)
        quiet = mailbox_payload(self.dovecot, 'user1', security='none')
        quiet['imap']['port'] = silent.getsockname()[1]
        timeout_r = self._validate(quiet)
        self.assertFalse(timeout_r['valid'])
        self.assertEqual(timeout_r['error']['code'], 'timeout', timeout_r)

        codes = {wrong['error']['code'], closed_r['error']['code'], bad_cert['error']['code'],
                 timeout_r['error']['code']}
        self.assertEqual(len(codes), 4)
        listed = self.service.request('GET', '/v1/mailboxes').json
        self.assertEqual(listed['items'], [], 'validate stored a mailbox')

    def test_invalid_body_is_400(self):
        payload = mailbox_payload(self.dovecot, 'user1')
        del payload['imap']['host']
        r = self.service.request('POST', '/v1/mailboxes/validate', payload)
        self.assertEqual(r.status, 400, r.text)
        self.assertEqual(r.json['error']['field'], 'imap.host')


if __name__ == '__main__':
    unittest.main()
