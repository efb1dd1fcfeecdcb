"""The mail harness alone (no service): a private Postfix relaying into the private Dovecot over
LMTP (STARTTLS, implicit TLS, AUTH through Dovecot SASL, refusals at RCPT, SIZE), Dovecot's
OAuth2 passdb against the fake OAuth server (XOAUTH2 over IMAP and through Postfix), and the fake
server's token, introspection and application endpoints."""

import email
import http.client
import imaplib
import json
import os
import smtplib
import sys
import time
import unittest
import urllib.parse

from harness.base import IntegrationCase, log, make_message, wait_until
from harness.dovecot import Dovecot
from harness.oauth_server import OAuthServer
from harness.postfix import Postfix, postfix_version
from harness.webhook import sign

SIZE_LIMIT = 200 * 1024


class MailHarnessTest(IntegrationCase):
    """One OAuth server, Dovecot (oauth2 on) and Postfix per test; no email-listener."""

    def setUp(self):  # replaces IntegrationCase.setUp: no binary, no service, no webhook
        if postfix_version() is None:
            raise unittest.SkipTest('postfix not installed (scripts/install-test-deps.sh)')
        self.oauth = OAuthServer().start()
        self.addCleanup(self.oauth.stop)
        # No per-IP penalty and no failure delay: the refusals below would otherwise slow every
        # later login from 127.0.0.1 (Postfix hands Dovecot the client's address).
        self.dovecot = Dovecot(users=3, oauth2=self.oauth, auth_penalty=False,
                               auth_failure_delay='0')
        self.addCleanup(self.dovecot.cleanup)
        self.dovecot.start()
        self.postfix = Postfix(self.dovecot, message_size_limit=SIZE_LIMIT)
        self.addCleanup(self.postfix.cleanup)
        self.addCleanup(self._dump_on_failure)
        self.postfix.start()
        log(f'{self.id()}: {self.dovecot.describe()} | {self.postfix.describe()} '
            f'| oauth={self.oauth.url}')

    def _dump_on_failure(self):
        if not self._failed() and not os.environ.get('ELTEST_VERBOSE'):
            return
        sys.stderr.write(f'\n===== {self.id()}: postfix log =====\n{self.postfix.log()[-8000:]}')
        sys.stderr.write(f'\n===== dovecot log =====\n{self.dovecot.log_text()[-6000:]}\n')
        sys.stderr.flush()

    def subjects(self, user):
        def fetch(c):
            typ, data = c.uid('FETCH', '1:*', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
            return [email.message_from_bytes(item[1])['Subject'] for item in data
                    if isinstance(item, tuple)]
        return self.dovecot._with_inbox(user, fetch)  # pylint: disable=protected-access

    def wait_delivered(self, user, count, timeout=5):
        return wait_until(lambda: self.dovecot.message_count(user) >= count, timeout,
                          what=f'{count} message(s) in {user}\'s INBOX')

    # ---- Postfix -----------------------------------------------------------------------------
    def test_starttls_auth_plain_delivers_over_lmtp(self):
        msg = make_message('via postfix', to_addr='user2@localhost')
        with self.postfix.smtp(security='starttls', user='user1') as c:
            self.assertIn('size', c.esmtp_features)
            self.assertEqual(int(c.esmtp_features['size']), SIZE_LIMIT)
            auth = c.esmtp_features['auth'].split()
            for mech in ('PLAIN', 'LOGIN', 'XOAUTH2'):
                self.assertIn(mech, auth)
            t0 = time.monotonic()
            self.assertEqual(c.sendmail('user1@localhost', ['user2@localhost'], msg), {})
        self.wait_delivered('user2', 1)
        print(f'\nPostfix -> LMTP -> INBOX in {1000 * (time.monotonic() - t0):.0f} ms', flush=True)
        self.assertEqual(self.subjects('user2'), ['via postfix'])
        self.assertEqual(self.dovecot.message_count('user1'), 0)
        text = self.postfix.log()
        self.assertIn('sasl_method=PLAIN, sasl_username=user1', text)
        self.assertIn(('user2@localhost', 'sent'), self.postfix.deliveries())
        self.assertIn('TLS connection established', text)

    def test_implicit_tls_and_plain_connections(self):
        with self.postfix.smtp(security='tls', user='user2') as c:  # smtps, AUTH PLAIN
            c.sendmail('user2@localhost', ['user1@localhost'], make_message('over smtps'))
        with self.postfix.smtp(security='none') as c:  # AUTH LOGIN without TLS ("security: none")
            self.assertIn('starttls', c.esmtp_features)
            c.user, c.password = 'user3', 'password3'
            c.auth('LOGIN', c.auth_login, initial_response_ok=False)
            c.sendmail('user3@localhost', ['user1@localhost'], make_message('over plain'))
        with self.postfix.smtp(security='none') as c:  # no AUTH at all (require_auth=False)
            c.sendmail('someone@example.test', ['user1@localhost'], make_message('anonymous'))
        self.wait_delivered('user1', 3)
        self.assertEqual(sorted(self.subjects('user1')), ['anonymous', 'over plain', 'over smtps'])
        with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
            self.postfix.smtp(user='user1', password='wrong')
        self.assertEqual(cm.exception.smtp_code, 535)

    def test_refusals_at_rcpt_and_size(self):
        with self.postfix.smtp(user='user1') as c:
            cases = {'nobody@localhost': (550, b'5.1.1'), 'tempfail@localhost': (451, b'4.3.0'),
                     'refused@localhost': (550, b'5.7.1'), 'someone@example.com': (554, b'5.7.1')}
            for rcpt, (code, enhanced) in cases.items():
                with self.subTest(rcpt=rcpt):
                    with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
                        c.sendmail('user1@localhost', [rcpt], make_message('refused'))
                    got_code, text = cm.exception.recipients[rcpt]
                    self.assertEqual(got_code, code, text)
                    self.assertTrue(text.startswith(enhanced), text)
                    c.rset()
            # One good and one unknown recipient: the good one gets the message.
            refused = c.sendmail('user1@localhost', ['user2@localhost', 'nobody@localhost'],
                                 make_message('partly'))
            self.assertEqual(refused['nobody@localhost'][0], 550)
            # SIZE: smtplib announces the size in MAIL FROM, Postfix refuses it there ...
            big = make_message('big', body='x' * (SIZE_LIMIT + 1024))
            with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
                c.sendmail('user1@localhost', ['user2@localhost'], big)
            self.assertEqual(cm.exception.smtp_code, 552)
            c.rset()
            # ... and a client that does not announce it is refused after DATA.
            self.assertEqual(c.mail('user1@localhost')[0], 250)
            self.assertEqual(c.rcpt('user2@localhost')[0], 250)
            code, text = c.data(big)
            self.assertEqual(code, 552, text)
        self.wait_delivered('user2', 1)
        time.sleep(0.3)
        self.assertEqual(self.subjects('user2'), ['partly'])
        self.assertEqual(self.postfix.queue_ids(), [])

    def test_require_auth_and_new_recipient_rules(self):
        strict = Postfix(self.dovecot, require_auth=True)
        self.addCleanup(strict.cleanup)
        strict.start()
        with strict.smtp() as c:
            with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
                c.sendmail('someone@example.test', ['user1@localhost'], make_message('no auth'))
            self.assertEqual(cm.exception.recipients['user1@localhost'][0], 530)
        strict.set_recipient_access('user3@localhost', '452 4.2.2 mailbox full')
        with strict.smtp(user='user1') as c:
            c.sendmail('user1@localhost', ['user2@localhost'], make_message('with auth'))
            with self.assertRaises(smtplib.SMTPRecipientsRefused) as cm:
                c.sendmail('user1@localhost', ['user3@localhost'], make_message('full'))
            self.assertEqual(cm.exception.recipients['user3@localhost'][0], 452)
        self.wait_delivered('user2', 1)
        self.dovecot.add_user('user9', 'password9')
        strict.sync_users()
        # Dovecot re-reads its passwd-file at most once a second: wait until user9 can log in.
        wait_until(lambda: self.dovecot.imap('user9', security='none').logout(), 5, interval=0.3,
                   what='user9 known to Dovecot')
        with strict.smtp(user='user9') as c:
            c.sendmail('user9@localhost', ['user9@localhost'], make_message('new user'))
        self.wait_delivered('user9', 1)

    # ---- OAuth2 ------------------------------------------------------------------------------
    def test_oauth2_imap_login_expiry_and_passwords(self):
        token = self.oauth.issue('user1', ttl_seconds=300)
        for security in ('tls', 'starttls'):
            c = self.dovecot.imap('user1', security=security, token=token)
            self.assertEqual(c.state, 'AUTH')
            c.logout()
        self.assertIn('AUTH=XOAUTH2', c.capabilities)
        self.assertEqual(self.oauth.introspections, 2)  # no auth cache: one per login
        self.assertEqual(self.oauth.calls_to('/introspect')[0].form, {'token': token})
        self.dovecot.imap('user2').logout()  # passwords still work (PLAIN/LOGIN passdb)
        self.assertEqual(self.oauth.introspections, 2)  # ... without asking the OAuth server
        self.oauth.expire(token)
        with self.assertRaises(imaplib.IMAP4.error):
            self.dovecot.imap('user1', token=token)
        short = self.oauth.issue('user1', ttl_seconds=1)
        self.dovecot.imap('user1', token=short).logout()
        time.sleep(1.1)
        with self.assertRaises(imaplib.IMAP4.error):
            self.dovecot.imap('user1', token=short)
        other = self.oauth.issue('user2')
        with self.assertRaises(imaplib.IMAP4.error):  # a token of another user
            self.dovecot.imap('user1', token=other)
        with self.assertRaises(imaplib.IMAP4.error):  # a token is no password
            self.dovecot.imap('user2', password=other)
        fresh = self.oauth.issue('user1')
        self.oauth.revoke_all_for('user1')
        with self.assertRaises(imaplib.IMAP4.error):
            self.dovecot.imap('user1', token=fresh)

    def test_oauth2_smtp_xoauth2_through_postfix(self):
        token = self.oauth.issue('user1')
        with self.postfix.smtp(user='user1', token=token) as c:
            c.sendmail('user1@localhost', ['user2@localhost'], make_message('xoauth2'))
        self.wait_delivered('user2', 1)
        self.assertIn('sasl_method=XOAUTH2, sasl_username=user1', self.postfix.log())
        self.oauth.expire(token)
        with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
            self.postfix.smtp(user='user1', token=token)
        self.assertEqual(cm.exception.smtp_code, 535)

    def test_oauth_server_endpoints(self):
        def post(path, body, headers):
            conn = http.client.HTTPConnection('127.0.0.1', self.oauth.port, timeout=10)
            try:
                conn.request('POST', path, body=body, headers=headers)
                r = conn.getresponse()
                return r.status, json.loads(r.read())
            finally:
                conn.close()
        form = {'Content-Type': 'application/x-www-form-urlencoded'}
        rt = self.oauth.issue_refresh('user3')
        grant = {'grant_type': 'refresh_token', 'refresh_token': rt,
                 'client_id': self.oauth.client_id, 'client_secret': self.oauth.client_secret}
        status, body = post('/token', urllib.parse.urlencode(grant), form)
        self.assertEqual(status, 200, body)
        self.assertEqual(body['expires_in'], self.oauth.access_ttl)
        self.assertTrue(self.oauth.is_active(body['access_token']))
        self.dovecot.imap('user3', token=body['access_token']).logout()
        self.assertEqual(self.oauth.refreshes, 1)
        status, body = post('/token', urllib.parse.urlencode(dict(grant, client_secret='x')), form)
        self.assertEqual((status, body['error']), (401, 'invalid_client'))
        status, body = post('/token', urllib.parse.urlencode(dict(grant, refresh_token='nope')), form)
        self.assertEqual((status, body['error']), (400, 'invalid_grant'))
        self.oauth.fail_next('/token', status=503)
        status, _ = post('/token', urllib.parse.urlencode(grant), form)
        self.assertEqual(status, 503)
        self.oauth.revoke_all_for('user3')
        status, body = post('/token', urllib.parse.urlencode(grant), form)
        self.assertEqual((status, body['error']), (400, 'invalid_grant'))
        self.assertEqual(self.oauth.refreshes, 1)
        self.assertEqual(self.oauth.counts['/token'], 5)
        # The application's refresh_url.
        self.oauth.app_token_for('user2', mailbox_id='mbx-1', ttl_seconds=120)
        payload = json.dumps({'mailbox_id': 'mbx-1', 'email': 'user2@localhost'}).encode()
        status, body = post('/app-token', payload, {'Content-Type': 'application/json',
                                                    'X-Email-Listener-Signature': sign('s', payload)})
        self.assertEqual(status, 200, body)
        self.assertEqual(body['expires_in'], 120)
        self.dovecot.imap('user2', token=body['access_token']).logout()
        req = self.oauth.app_requests[-1]
        self.assertEqual(req.json['mailbox_id'], 'mbx-1')
        self.assertEqual(req.signature, sign('s', payload))
        status, _ = post('/app-token', json.dumps({'mailbox_id': 'other'}), {})
        self.assertEqual(status, 404)


if __name__ == '__main__':
    unittest.main()
