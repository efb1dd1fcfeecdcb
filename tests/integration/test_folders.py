"""Several watched folders: each has its own IDLE session and checkpoint, and every event names
its folder. Mail is added to a second folder with IMAP APPEND, as a mail client filing a message
would."""

import time
import unittest
import uuid

from harness.base import IntegrationCase
from harness.dovecot import make_message


class FoldersTest(IntegrationCase):
    def _append(self, user, folder, subject):
        c = self.dovecot.imap(user, security='none', host='127.0.0.1')
        try:
            msg = make_message(subject, to_addr=self.dovecot.address(user))
            typ, data = c.append(folder, None, None, msg)
            self.assertEqual(typ, 'OK', data)
        finally:
            c.logout()

    def test_two_folders_each_delivered_with_its_name(self):
        c = self.dovecot.imap('user1', security='none', host='127.0.0.1')
        try:
            self.assertEqual(c.create('Archive')[0], 'OK')
        finally:
            c.logout()
        tag = uuid.uuid4().hex[:8]
        self._append('user1', 'Archive', f'already filed {tag}')  # before: not delivered
        mid = self.register('user1', folders=['INBOX', 'Archive'])
        st = self.service.get_mailbox(mid)
        self.assertEqual([f['name'] for f in st['folders']], ['INBOX', 'Archive'])
        self.inject('user1', f'inbox {tag}')
        self._append('user1', 'Archive', f'archive {tag}')
        self.inject('user1', f'inbox 2 {tag}')
        msgs = self.hook.wait_messages(3, 30, mailbox_id=mid)
        by_folder = {}
        for m in msgs:
            by_folder.setdefault(m.data.get('folder'), []).append(m.data.get('subject'))
        self.assertEqual(by_folder, {'INBOX': [f'inbox {tag}', f'inbox 2 {tag}'],
                                     'Archive': [f'archive {tag}']})
        time.sleep(1.0)
        self.assertEqual(len(self.hook.messages(mid)), 3, 'the mail filed before was delivered')
        ids = {m.event_id for m in msgs}
        self.assertEqual(len(ids), 3, 'two folders gave the same event id')
        st = self.service.get_mailbox(mid)
        archive = [f for f in st['folders'] if f['name'] == 'Archive'][0]
        self.assertEqual(archive['uidvalidity'], self.dovecot.uidvalidity('user1', 'Archive'))
        self.assertEqual(archive['last_uid'], 2)


if __name__ == '__main__':
    unittest.main()
