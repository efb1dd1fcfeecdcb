"""Scenario 6: TLS. Implicit TLS verified against the test CA; without the CA the certificate is
refused (and said so); STARTTLS with the CA; tls_insecure without the CA."""

import os
import time
import unittest
import uuid

from harness.base import IntegrationCase, log, wait_until
from harness.dovecot import make_test_ca


class TlsTest(IntegrationCase):
    dovecot_options = {'users': 2}

    def _delivers(self, mid, user):
        subject = f'tls {user} {uuid.uuid4().hex[:8]}'
        self.inject(user, subject)
        msgs = self.hook.wait_messages(1, 30, mailbox_id=mid)
        self.assertEqual(msgs[0].data.get('subject'), subject)
        self.assert_signed(msgs)

    def test_implicit_tls_with_test_ca(self):
        # Host name verification against DNS:localhost in the certificate.
        mid = self.register('user1', security='tls', ca=True, host='localhost')
        self._delivers(mid, 'user1')

    def test_implicit_tls_with_test_ca_by_ip(self):
        mid = self.register('user1', security='tls', ca=True, host='127.0.0.1')
        self._delivers(mid, 'user1')

    def test_implicit_tls_without_ca_is_refused(self):
        mid = self.register('user1', security='tls', ca=False, wait_idle=False)

        def cert_error():
            st = self.service.get_mailbox(mid)
            self.assertNotEqual(st.get('state'), 'idle', f'connected without trusting the CA: {st}')
            return st if 'certif' in (st.get('last_error') or '').lower() else None
        st = wait_until(cert_error, 20, what='last_error mentioning the certificate')
        log(f'status without CA: {st}')
        self.inject('user1', 'must not be delivered')
        time.sleep(3)
        self.assertNotEqual(self.service.get_mailbox(mid).get('state'), 'idle')
        self.assertEqual(self.hook.messages(mid), [])
        self.assertEqual(self.dovecot.successful_logins('user1'), 0,
                         'the service logged in over an unverified connection')

    def test_starttls_with_test_ca(self):
        mid = self.register('user2', security='starttls', ca=True)
        self._delivers(mid, 'user2')
        self.assertIn('TLS', '\n'.join(l for l in self.dovecot.log_text().splitlines()
                                       if 'Login: user=<user2>' in l))

    def test_certificate_for_another_host_is_refused(self):
        # A certificate from the trusted CA, but for mail.example.test only: connecting to
        # localhost / 127.0.0.1 must fail host name verification.
        self.dovecot.stop()
        make_test_ca(os.path.dirname(self.dovecot.ca_path), names=('mail.example.test',), ips=())
        self.dovecot.start()
        for host in ('localhost', '127.0.0.1'):
            mid = self.register('user1', mailbox_id=f'other-host-{host.replace(".", "-")}',
                                security='tls', ca=True, host=host, wait_idle=False)

            def refused(mid=mid):
                st = self.service.get_mailbox(mid)
                self.assertNotEqual(st.get('state'), 'idle', f'accepted a wrong host: {st}')
                err = (st.get('last_error') or '').lower()
                return st if ('hostname mismatch' in err or 'ip address mismatch' in err) else None
            st = wait_until(refused, 20, what=f'a host name mismatch for {host}')
            log(f'{host}: {st.get("last_error")}')
        self.assertEqual(self.dovecot.successful_logins('user1'), 0)

    def test_tls_insecure_without_ca(self):
        mid = self.register('user2', security='tls', ca=False, insecure=True)
        self._delivers(mid, 'user2')


if __name__ == '__main__':
    unittest.main()
