"""'"folders": "all"': every folder of the account is watched: the first ones with an IDLE
connection each (--max-idle-per-mailbox), the rest by STATUS polling; mail moved or filed into
another folder is delivered with that folder's name. GET /v1/mailboxes/{id}/folders lists the
server's folders with roles and counts."""

import time
import unittest
import uuid

from harness.base import IntegrationCase
from harness.dovecot import make_message


class AllFoldersTest(IntegrationCase):
    # Two IDLE connections (INBOX and the first other folder); the others on one more connection
    # with NOTIFY (Dovecot offers it). The STATUS poll interval is long on purpose: only
    # NOTIFY can deliver within the test's time.
    service_options = {'extra_args': ['--max-idle-per-mailbox', '2',
                                      '--folder-poll-interval', '10m']}
    watch_mode = 'notify'

    def _imap(self):
        return self.dovecot.imap('user1', security='none', host='127.0.0.1')

    def _append(self, folder, subject):
        c = self._imap()
        try:
            msg = make_message(subject, to_addr=self.dovecot.address('user1'))
            typ, data = c.append(folder, None, None, msg)
            self.assertEqual(typ, 'OK', data)
        finally:
            c.logout()

    def test_all_folders_idle_and_polled_with_folder_names(self):
        c = self._imap()
        try:
            for name in ('Archive', 'Projects', 'Projects.Alpha'):
                self.assertEqual(c.create(name)[0], 'OK', name)
        finally:
            c.logout()
        tag = uuid.uuid4().hex[:8]
        self._append('Projects.Alpha', f'filed before {tag}')  # before registration: not sent
        mid = self.register('user1', folders='all')
        # Every folder gets a baseline (INBOX and Archive by IDLE, the others by polling).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            st = self.service.get_mailbox(mid)
            names = {f['name'] for f in st['folders'] if f['uidvalidity'] is not None}
            if {'INBOX', 'Archive', 'Projects', 'Projects.Alpha'} <= names:
                break
            time.sleep(0.2)
        self.assertTrue(st.get('all_folders'), st)
        self.assertTrue({'INBOX', 'Archive', 'Projects', 'Projects.Alpha'} <= names, st)
        log = self.service.log_text()
        self.assertIn(f'mode={self.watch_mode}', log, f'no folder was watched by {self.watch_mode}')

        self.inject('user1', f'inbox {tag}')
        self._append('Projects.Alpha', f'alpha {tag}')   # a polled folder
        self._append('Archive', f'archive {tag}')        # an IDLE folder
        msgs = self.hook.wait_messages(3, 30, mailbox_id=mid)
        got = {(m.data.get('folder'), m.data.get('subject')) for m in msgs}
        self.assertEqual(got, {('INBOX', f'inbox {tag}'), ('Projects.Alpha', f'alpha {tag}'),
                               ('Archive', f'archive {tag}')})

        # A message moved from INBOX into Projects (polled) is new mail there.
        c = self._imap()
        try:
            c.select('INBOX')
            typ, data = c.uid('SEARCH', None, f'SUBJECT "inbox {tag}"')
            uid = data[0].split()[-1].decode()
            typ, data = c.uid('MOVE', uid, 'Projects')
            self.assertEqual(typ, 'OK', data)
        finally:
            c.logout()
        msgs = self.hook.wait_messages(4, 30, mailbox_id=mid)
        moved = [m for m in msgs if m.data.get('folder') == 'Projects']
        self.assertEqual([m.data.get('subject') for m in moved], [f'inbox {tag}'])
        time.sleep(1.5)  # a poll round or more: nothing else arrives
        self.assertEqual(len({m.event_id for m in self.hook.messages(mid)}), 4)
        self.assertNotIn(f'filed before {tag}',
                         [m.data.get('subject') for m in self.hook.messages(mid)])

    def test_folders_endpoint_lists_roles_and_counts(self):
        c = self._imap()
        try:
            self.assertEqual(c.create('Archive')[0], 'OK')
        finally:
            c.logout()
        for i in range(3):
            self._append('Archive', f'a{i}')
        self.inject('user1', 'one in the inbox')
        mid = self.register('user1', folders=['INBOX'])
        r = self.service.request('GET', f'/v1/mailboxes/{mid}/folders')
        self.assertEqual(r.status, 200, r.text)
        items = {f['name']: f for f in r.json['items']}
        self.assertIn('INBOX', items)
        self.assertIn('Archive', items)
        self.assertEqual(items['Archive']['messages'], 3)
        self.assertEqual(items['Archive']['unseen'], 3)
        self.assertEqual(items['INBOX']['messages'], 1)
        self.assertTrue(items['INBOX']['watched'])
        self.assertFalse(items['Archive']['watched'])
        self.assertEqual(items['Archive']['uidvalidity'],
                         self.dovecot.uidvalidity('user1', 'Archive'))
        self.assertEqual(items['Archive']['delimiter'], '.')
        sent = [f for f in r.json['items'] if f['role'] == '\\Sent']
        self.assertEqual([f['name'] for f in sent], ['Sent'], r.json)
        # Unknown mailbox: 404 naming the id.
        r = self.service.request('GET', '/v1/mailboxes/nope/folders')
        self.assertEqual(r.status, 404, r.text)
        # A mailbox whose password is now refused: 502 naming imap.
        body = self.service.get_mailbox(mid)
        self.assertEqual(body['id'], mid)

    def test_bad_folders_value_is_refused(self):
        from harness.service import mailbox_payload
        payload = mailbox_payload(self.dovecot, 'user1')
        payload['folders'] = 'everything'
        r = self.service.request('POST', '/v1/mailboxes', payload)
        self.assertEqual(r.status, 400, r.text)
        self.assertEqual(r.json['error']['field'], 'folders')


class AllFoldersPollingTest(AllFoldersTest):
    """The same without NOTIFY: STATUS polling every second."""
    service_options = {'extra_args': ['--max-idle-per-mailbox', '2', '--imap-notify', 'false',
                                      '--folder-poll-interval', '1s']}
    watch_mode = 'status-polling'


if __name__ == '__main__':
    unittest.main()
