"""Scenario 4: a wrong password gives state auth_failed and a mailbox.state event, and the
service does not hammer the server: few login attempts over ~10 s with --auth-retry 3s."""

import time
import unittest

from harness.base import IntegrationCase, log
from harness.service import mailbox_payload

WINDOW = 10.0
MAX_ATTEMPTS = 4  # the first one + one per 3 s of --auth-retry


class AuthFailureTest(IntegrationCase):
    # No per-IP penalty and no failure delay in Dovecot: a client retrying in a tight loop
    # would show dozens of attempts here instead of being slowed down by the server.
    dovecot_options = {'auth_penalty': False, 'auth_failure_delay': 0}

    def test_wrong_password(self):
        mark = self.dovecot.log_mark()
        t0 = time.monotonic()
        mid = self.register('user1', wait_idle=False, password='wrong-password-x7')
        st = self.service.wait_state(mid, 'auth_failed', timeout=20)
        log(f'auth_failed status: {st}')
        self.assertTrue(st.get('last_error'), f'no last_error: {st}')

        def state_event(ds):
            return [d for d in ds if d.accepted and d.type == 'mailbox.state'
                    and (d.json or {}).get('mailbox_id') == mid
                    and d.data.get('state') == 'auth_failed']
        events = self.hook.wait_for(state_event, 20, 'a mailbox.state auth_failed event')
        self.assert_signed(events)
        log(f'mailbox.state event data: {events[0].data}')

        time.sleep(max(0.0, WINDOW + 1.0 - (time.monotonic() - t0)))
        times = self.dovecot.failed_login_times('user1', since=mark)
        self.assertTrue(times, 'Dovecot saw no login attempt at all')
        in_window = [t - times[0] for t in times if t - times[0] < WINDOW]
        log(f'failed logins seen by Dovecot, seconds after the first: '
            f'{[round(t - times[0], 2) for t in times]}')
        self.assertLessEqual(len(in_window), MAX_ATTEMPTS,
                             f'{len(in_window)} login attempts within {WINDOW}s: {in_window}')
        self.assertGreaterEqual(len(in_window), 2, 'no retry within the window with --auth-retry 3s')
        st = self.service.get_mailbox(mid)
        self.assertNotEqual(st.get('state'), 'idle', st)
        self.assertEqual(self.hook.messages(mid), [])
        # Secrets are never logged.
        text = self.service.log_text()
        self.assertNotIn('wrong-password-x7', text)
        self.assertNotIn(self.secret, text)
        r = self.service.request('GET', f'/v1/mailboxes/{mid}')
        self.assertNotIn('wrong-password-x7', r.text)

    def test_put_with_the_right_password_recovers(self):
        mid = self.register('user2', wait_idle=False, password='stale-password-q4')
        self.service.wait_state(mid, 'auth_failed', timeout=20)
        # The application fixes the credentials; the password is the only change.
        body = mailbox_payload(self.dovecot, 'user2')
        r = self.service.request('PUT', f'/v1/mailboxes/{mid}', body)
        self.assertEqual(r.status, 200, r.text)
        st = self.service.wait_state(mid, 'idle', timeout=20)
        self.assertNotIn('last_error', st)
        self.inject('user2', 'after the fix')
        msgs = self.hook.wait_messages(1, 20, mailbox_id=mid)
        self.assertEqual(msgs[0].data.get('subject'), 'after the fix')
        states = [d.data.get('state') for d in self.hook.events('mailbox.state', mailbox_id=mid)]
        self.assertEqual(states[:1], ['auth_failed'], states)
        self.assertIn('idle', states)
        # A PUT without the password keeps the stored one: still idle, no new login failure.
        body['imap'].pop('password')
        body['folders'] = ['INBOX']
        r = self.service.request('PUT', f'/v1/mailboxes/{mid}', body)
        self.assertEqual(r.status, 200, r.text)
        time.sleep(1.0)
        self.service.wait_state(mid, 'idle', timeout=20)


if __name__ == '__main__':
    unittest.main()
