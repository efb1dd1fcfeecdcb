"""A server without IDLE: the session polls with NOOP (state `polling`) and still delivers every
message, in order."""

import unittest
import uuid

from harness.base import IntegrationCase


class PollingTest(IntegrationCase):
    # Dovecot announces what imap_capability says: leave IDLE out, as some servers do.
    dovecot_options = {'extra_config': 'imap_capability = IMAP4rev1 SASL-IR LITERAL+ ID ENABLE '
                                       'UIDPLUS NAMESPACE\n'}
    service_options = {'extra_args': ['--poll-interval', '1s', '--recheck-interval', '10m']}

    def test_no_idle_capability_means_noop_polling(self):
        mid = self.register('user1', wait_idle=False)
        st = self.service.wait_state(mid, 'polling', timeout=20)
        self.assertEqual(st['state'], 'polling')
        tag = uuid.uuid4().hex[:8]
        subjects = [f'polled {i} {tag}' for i in range(3)]
        for s in subjects:
            self.inject('user1', s)
        msgs = self.hook.wait_messages(3, 20, mailbox_id=mid)
        self.assertEqual([m.data.get('subject') for m in msgs], subjects)
        self.assert_signed(msgs)
        self.assertEqual(self.service.get_mailbox(mid)['state'], 'polling')


if __name__ == '__main__':
    unittest.main()
