"""OAuth2 sign-in against a real Dovecot whose oauth2 passdb validates bearer tokens at a
token-introspection endpoint the test runs (harness.oauth_server): XOAUTH2 and OAUTHBEARER for
IMAP, XOAUTH2 for SMTP through Postfix (Dovecot SASL); a token that expires mid-IDLE is
refreshed (RFC 6749 refresh grant) and the session keeps delivering; a refused refresh ends in
auth_failed; refresh_url asks the application, signed with the webhook secret."""

import time
import unittest
import uuid

from harness.base import IntegrationCase, wait_until
from harness.oauth_server import OAuthServer
from harness.postfix import Postfix
from harness.service import imap_settings
from harness.webhook import sign


class OAuth2Case(IntegrationCase):
    app_secret = None

    def setUp(self):
        self.oauth = OAuthServer(app_secret=self.app_secret).start()
        self.addCleanup(self.oauth.stop)
        self.dovecot_options = {'oauth2': self.oauth, 'auth_penalty': False,
                                'auth_failure_delay': '0'}
        super().setUp()

    def payload(self, user, oauth2, **kw):
        imap = imap_settings(self.dovecot, user)
        del imap['password']
        body = {'email': self.dovecot.address(user), 'imap': imap, 'oauth2': oauth2}
        body.update(kw)
        return body

    def grant(self, user, ttl=3600):
        return {'access_token': self.oauth.issue(user, ttl), 'refresh_token':
                self.oauth.issue_refresh(user), 'token_url': self.oauth.token_url,
                'client_id': self.oauth.client_id, 'client_secret': self.oauth.client_secret}


class OAuth2ImapTest(OAuth2Case):
    def test_token_expired_mid_idle_is_refreshed_and_delivery_goes_on(self):
        oauth2 = self.grant('user1')
        body = self.service.add_mailbox(self.payload('user1', oauth2))
        mid = body['id']
        self.service.wait_state(mid, 'idle', timeout=30)
        self.assertEqual(self.oauth.refreshes, 0, 'a valid token was refreshed')
        tag = uuid.uuid4().hex[:8]
        self.inject('user1', f'before expiry {tag}')
        self.hook.wait_messages(1, 20, mailbox_id=mid)

        # The token dies while the session idles; the server drops the connection.
        self.oauth.expire(oauth2['access_token'])
        self.dovecot.restart()
        wait_until(lambda: self.oauth.refreshes >= 1, 30, what='a refresh grant')
        self.service.wait_state(mid, 'idle', timeout=30)
        self.inject('user1', f'after expiry {tag}')
        msgs = self.hook.wait_messages(2, 30, mailbox_id=mid)
        self.assertEqual([m.data['subject'] for m in msgs],
                         [f'before expiry {tag}', f'after expiry {tag}'])
        call = self.oauth.calls_to('/token')[0]
        self.assertEqual(call.form.get('grant_type'), 'refresh_token')
        self.assertEqual(call.form.get('refresh_token'), oauth2['refresh_token'])
        self.assertEqual(call.form.get('client_id'), self.oauth.client_id)
        st = self.service.get_mailbox(mid)
        self.assertIn('expires_at', st['oauth2'])
        self.assertNotIn('access_token', str(st))
        # The new token was saved: a restart uses it without refreshing again.
        before = self.oauth.refreshes
        self.service.restart()
        self.service.wait_state(mid, 'idle', timeout=30)
        self.assertEqual(self.oauth.refreshes, before)
        log = self.service.log_text()
        for secret in [oauth2['access_token'], oauth2['refresh_token'],
                       self.oauth.client_secret] + self.oauth.tokens_for('user1'):
            self.assertNotIn(secret, log)
        self.assertIn('oauth2_token_refreshed', log)

    def test_token_near_expiry_is_refreshed_before_use_and_oauthbearer(self):
        oauth2 = self.grant('user2', ttl=30)  # inside the refresh margin
        oauth2['mechanism'] = 'oauthbearer'
        oauth2['expires_at'] = time.strftime('%Y-%m-%dT%H:%M:%SZ',
                                             time.gmtime(time.time() + 30))
        mid = self.service.add_mailbox(self.payload('user2', oauth2))['id']
        self.service.wait_state(mid, 'idle', timeout=30)
        self.assertEqual(self.oauth.refreshes, 1)
        self.assertIn('method=OAUTHBEARER', self.dovecot.log_text())

    def test_refused_refresh_is_auth_failed(self):
        oauth2 = self.grant('user3')
        self.oauth.revoke_all_for('user3')  # the access token and the refresh token die
        mid = self.service.add_mailbox(self.payload('user3', oauth2))['id']
        st = self.service.wait_state(mid, 'auth_failed', timeout=30)
        self.assertIn('refresh', st.get('last_error', ''), st)
        self.assertGreaterEqual(len(self.oauth.calls_to('/token')), 1)


class OAuth2AppTokenTest(OAuth2Case):
    app_secret = None  # checked below by recomputing the signature

    def test_refresh_url_asks_the_application(self):
        expired = self.oauth.issue('user1', 3600)
        self.oauth.expire(expired)
        body = self.payload('user1', {'access_token': expired,
                                      'refresh_url': self.oauth.app_token_url},
                            id='crm-7')
        self.oauth.app_token_for('user1', mailbox_id='crm-7')
        self.service.add_mailbox(body)
        self.service.wait_state('crm-7', 'idle', timeout=30)
        calls = self.oauth.calls_to('/app-token')
        self.assertGreaterEqual(len(calls), 1)
        self.assertEqual(calls[0].json, {'mailbox_id': 'crm-7',
                                         'email': self.dovecot.address('user1')})
        self.assertEqual(calls[0].signature, sign(self.secret, calls[0].body))
        self.inject('user1', 'via app token')
        self.hook.wait_messages(1, 20, mailbox_id='crm-7')


class OAuth2SmtpTest(OAuth2Case):
    def setUp(self):
        super().setUp()
        self.postfix = Postfix(self.dovecot)
        self.addCleanup(self.postfix.cleanup)
        self.postfix.start()

    def test_send_with_xoauth2_and_a_refreshed_token(self):
        oauth2 = self.grant('user1')
        smtp = {'host': '127.0.0.1', 'port': self.postfix.port, 'security': 'starttls',
                'tls_ca_file': self.postfix.ca_file}
        mid = self.service.add_mailbox(self.payload('user1', oauth2, smtp=smtp))['id']
        receiver = self.register('user2')
        self.service.wait_state(mid, 'idle', timeout=30)
        self.oauth.expire(oauth2['access_token'])  # SMTP AUTH is refused, then refreshed
        r = self.service.request('POST', f'/v1/mailboxes/{mid}/send',
                                 {'to': self.dovecot.address('user2'), 'subject': 'xoauth2',
                                  'text': 'sent with a bearer token'})
        self.assertEqual(r.status, 202, r.text)
        msgs = self.hook.wait_messages(1, 30, mailbox_id=receiver)
        self.assertEqual(msgs[0].data['subject'], 'xoauth2')
        self.assertIn('sasl_method=XOAUTH2', self.postfix.log())
        self.assertGreaterEqual(self.oauth.refreshes, 1)
        send_id = r.json['send_id']
        st = wait_until(lambda: (lambda j: j if j['state'] == 'sent' else None)(
            self.service.request('GET', f'/v1/sends/{send_id}').json), 20, what='sent')
        self.assertEqual(st['sent_folder']['state'], 'appended')


if __name__ == '__main__':
    unittest.main()
