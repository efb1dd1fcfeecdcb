"""Scenario 3: the IMAP server restarts; the session reconnects and delivers what arrived while
the server was down and after."""

import time
import unittest
import uuid

from harness.base import IntegrationCase, log, make_message


class DovecotRestartTest(IntegrationCase):
    def test_reconnects_after_server_restart(self):
        mid = self.register('user1')
        tag = uuid.uuid4().hex[:8]
        self.inject('user1', f'before {tag}')
        self.hook.wait_messages(1, 30, mailbox_id=mid)

        self.dovecot.stop()
        st = self.service.wait_state(mid, ('connecting', 'backoff'), timeout=20)
        log(f'after server stop: {st}')
        down = [f'while down {i} {tag}' for i in range(2)]
        for s in down:  # straight into the maildir: LMTP is down with the server
            self.dovecot.inject_offline('user1', make_message(s))
        time.sleep(1.5)  # let the service retry against the closed port a few times
        self.dovecot.start()
        st = self.service.wait_state(mid, 'idle', timeout=30)
        log(f'after server start: {st}')
        self.inject('user1', f'after {tag}')

        want = [f'before {tag}'] + down + [f'after {tag}']
        msgs = self.hook.wait_messages(4, 30, mailbox_id=mid)
        self.assertEqual([m.data.get('subject') for m in msgs], want)
        uids = [m.data.get('uid') for m in msgs]
        self.assertEqual(uids, sorted(set(uids)), uids)
        self.assert_signed(msgs)
        self.assertEqual(len(self.dovecot.unseen_uids('user1')), 4)


if __name__ == '__main__':
    unittest.main()
