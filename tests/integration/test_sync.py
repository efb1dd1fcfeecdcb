"""POST /v1/mailboxes/{id}/sync delivers the messages of a period, oldest first, as message.new
events marked backfill, without disturbing live delivery; progress is in the mailbox status; a
second call gives the same event ids."""

import datetime
import imaplib
import time
import unittest
import uuid

from harness.base import IntegrationCase
from harness.dovecot import make_message


def internal_date(day):
    """10:00 UTC on 2026-01-01 + day days."""
    t = datetime.datetime(2026, 1, 1, 10, 0, tzinfo=datetime.timezone.utc)
    return t + datetime.timedelta(days=day)


class SyncTest(IntegrationCase):
    def _fill(self, count, tag):
        c = self.dovecot.imap('user1', security='none', host='127.0.0.1')
        try:
            # Appended newest first, so UID order differs from arrival order: the sync must sort
            # by the date the server received each message, not by UID.
            for day in reversed(range(count)):
                msg = make_message(f'old {day:03d} {tag}', to_addr=self.dovecot.address('user1'))
                typ, data = c.append('INBOX', None, imaplib.Time2Internaldate(
                    internal_date(day).timestamp()), msg)
                self.assertEqual(typ, 'OK', data)
        finally:
            c.logout()

    def test_period_oldest_first_backfill_and_idempotent(self):
        tag = uuid.uuid4().hex[:8]
        self._fill(200, tag)
        mid = self.register('user1')
        time.sleep(0.5)
        self.assertEqual(self.hook.messages(mid), [], 'old mail was delivered live')

        # Since day 100 at 12:00: days 101..199 (the day-100 message came at 10:00).
        since = (internal_date(100) + datetime.timedelta(hours=2)).isoformat().replace(
            '+00:00', 'Z')
        r = self.service.request('POST', f'/v1/mailboxes/{mid}/sync', {'since': since})
        self.assertEqual(r.status, 202, r.text)
        sync_id = r.json['sync_id']
        msgs = self.hook.wait_messages(99, 60, mailbox_id=mid)
        subjects = [m.data['subject'] for m in msgs]
        self.assertEqual(subjects, [f'old {d:03d} {tag}' for d in range(101, 200)])
        self.assertTrue(all(m.data.get('backfill') is True for m in msgs))
        self.assertTrue(all(m.data.get('sync_id') == sync_id for m in msgs))
        first_ids = [m.event_id for m in msgs]

        # Live delivery still works while and after syncing, and is not marked backfill.
        self.inject('user1', f'live {tag}')
        live = self.hook.wait_for(
            lambda ds: [d for d in ds if d.type == 'message.new'
                        and d.data.get('subject') == f'live {tag}'], 20, 'the live message')
        self.assertNotIn('backfill', live[0].data)

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            st = self.service.get_mailbox(mid)
            if st.get('sync', {}).get('state') == 'done':
                break
            time.sleep(0.1)
        self.assertEqual(st['sync']['state'], 'done', st)
        self.assertEqual(st['sync']['done'], 99)
        self.assertEqual(st['sync']['total'], 99)
        self.assertEqual(st['sync']['sync_id'], sync_id)

        # Again, with an until: the same ids for the same messages.
        until = (internal_date(150) + datetime.timedelta(hours=1)).isoformat().replace(
            '+00:00', 'Z')
        before = len(self.hook.deliveries())
        r = self.service.request('POST', f'/v1/mailboxes/{mid}/sync',
                                 {'since': since, 'until': until})
        self.assertEqual(r.status, 202, r.text)

        def second_round(ds):
            got = [d for d in ds[before:] if d.type == 'message.new' and d.data.get('backfill')]
            return got if len(got) >= 50 else None
        again = self.hook.wait_for(second_round, 60, 'the second sync')
        self.assertEqual([d.data['subject'] for d in again],
                         [f'old {d:03d} {tag}' for d in range(101, 151)])
        self.assertEqual([d.event_id for d in again], first_ids[:50])

    def test_bad_bodies(self):
        mid = self.register('user1')
        for body, field in (({}, 'since'), ({'since': 'yesterday'}, 'since'),
                            ({'since': '2026-01-02T00:00:00Z', 'until': '2026-01-01T00:00:00Z'},
                             'until'),
                            ({'since': '2026-01-02T00:00:00Z', 'folder': 'x'}, 'folder')):
            r = self.service.request('POST', f'/v1/mailboxes/{mid}/sync', body)
            self.assertEqual(r.status, 400, r.text)
            self.assertEqual(r.json['error']['field'], field, r.text)
        r = self.service.request('POST', '/v1/mailboxes/none/sync',
                                 {'since': '2026-01-02T00:00:00Z'})
        self.assertEqual(r.status, 404, r.text)


if __name__ == '__main__':
    unittest.main()
