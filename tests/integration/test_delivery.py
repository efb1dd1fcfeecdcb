"""Scenario 1: new mail reaches the webhook in order, signed, with the right fields, and stays
unseen on the server; `since` backfills older mail first."""

import datetime
import time
import unittest
import uuid

from harness.base import IntegrationCase, log, wait_until


class DeliveryTest(IntegrationCase):
    def test_three_messages_in_order_signed_and_unseen(self):
        tag = uuid.uuid4().hex[:8]
        # Mail that is already there when the mailbox is registered without `since` is not sent.
        self.inject('user1', f'old {tag}')
        mid = self.register('user1')
        subjects = [f'delivery {i} {tag}' for i in range(3)]
        for s in subjects:
            self.inject('user1', s, from_addr='Alice Sender <alice@example.test>',
                        to_addr='User One <user1@localhost>', body=f'body of {s}\n')
        msgs = self.hook.wait_messages(3, 30, mailbox_id=mid)
        self.assertEqual([m.data.get('subject') for m in msgs], subjects)
        self.assert_signed(msgs)
        uids = [m.data.get('uid') for m in msgs]
        self.assertTrue(all(isinstance(u, int) for u in uids), uids)
        self.assertEqual(uids, sorted(set(uids)), f'uids not strictly ascending: {uids}')
        for m, s in zip(msgs, subjects):
            body, data = m.json, m.data
            self.assertEqual(body.get('type'), 'message.new')
            self.assertEqual(body.get('mailbox_id'), mid)
            self.assertTrue(body.get('created_at'), body)
            self.assertEqual(data.get('folder'), 'INBOX')
            frm = data.get('from') or {}
            self.assertEqual((frm.get('name'), frm.get('address')),
                             ('Alice Sender', 'alice@example.test'), frm)
            to = data.get('to') or []
            self.assertIn('user1@localhost', [t.get('address') for t in to], to)
            self.assertIn(f'body of {s}', data.get('text') or '', data)
            self.assertNotIn('\\Seen', data.get('flags') or [], data.get('flags'))
            self.assertTrue(data.get('internal_date'), data)
            self.assertGreater(data.get('size') or 0, 0, data)
            self.assertTrue(data.get('message_id'), data)
            self.assertEqual(m.attempt, 1, f'attempt header on a first delivery: {m.headers}')
        # Only the three new messages, not the old one.
        time.sleep(1.0)
        all_subjects = {m.data.get('subject') for m in self.hook.messages(mid)}
        self.assertNotIn(f'old {tag}', all_subjects)
        # BODY.PEEK: every message is still unseen on the server.
        flags = self.dovecot.flags('user1')
        for uid in uids:
            self.assertIn(uid, flags, f'uid {uid} unknown to the server: {flags}')
            self.assertNotIn('\\Seen', flags[uid], f'uid {uid} was marked seen: {flags}')
        self.assertEqual(len(self.dovecot.unseen_uids('user1')), 4)
        # The status reports the checkpoint and the count.
        st = wait_until(lambda: (lambda s: s if (s.get('folders') or [{}])[0].get('last_uid') == uids[-1]
                                 else None)(self.service.get_mailbox(mid)), 10,
                        what=f'last_uid == {uids[-1]}')
        self.assertEqual(st['folders'][0]['name'], 'INBOX')
        self.assertEqual(st['folders'][0]['uidvalidity'], self.dovecot.uidvalidity('user1'))
        self.assertGreaterEqual(st.get('delivered', 0), 3, st)
        self.assertEqual(st.get('state'), 'idle', st)
        log(f'status after delivery: {st}')

    def test_since_backfills_older_mail_first(self):
        tag = uuid.uuid4().hex[:8]
        before = [f'backfill {i} {tag}' for i in range(2)]
        for s in before:
            self.inject('user2', s)
        since = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1))
        mid = self.register('user2', since=since.strftime('%Y-%m-%dT%H:%M:%SZ'))
        self.inject('user2', f'live {tag}')
        msgs = self.hook.wait_messages(3, 30, mailbox_id=mid)
        self.assertEqual([m.data.get('subject') for m in msgs], before + [f'live {tag}'])
        uids = [m.data.get('uid') for m in msgs]
        self.assertEqual(uids, sorted(set(uids)), uids)
        self.assert_signed(msgs)
        self.assertEqual(len(self.dovecot.unseen_uids('user2')), 3)

    def test_per_mailbox_webhook_overrides_the_global_one(self):
        tag = uuid.uuid4().hex[:8]
        own_secret = 'own-' + tag
        url = self.hook.url_for(f'/mailbox-hook-{tag}', own_secret)
        mid = self.register('user3', webhook={'url': url, 'secret': own_secret})
        self.inject('user3', f'own hook {tag}')
        msgs = self.hook.wait_messages(1, 30, mailbox_id=mid)
        self.assertEqual(msgs[0].path, f'/mailbox-hook-{tag}')
        self.assertEqual(msgs[0].data.get('subject'), f'own hook {tag}')
        self.assert_signed(msgs)  # verified with the mailbox's own secret
        self.assertFalse([d for d in self.hook.deliveries()
                          if d.json and d.json.get('mailbox_id') == mid and d.path == '/hook'],
                         'an event of this mailbox went to the global webhook')
        # The status shows the webhook URL, never its secret.
        st = self.service.get_mailbox(mid)
        self.assertEqual(st.get('webhook'), {'url': url})
        self.assertNotIn(own_secret, self.service.request('GET', f'/v1/mailboxes/{mid}').text)


class HibernatedDeliveryTest(IntegrationCase):
    """Dovecot moves idle sessions into imap-hibernate after imap_hibernate_timeout; pushes from a
    hibernated session (and the ones the server misses around that moment, REFERENCE §3) must
    still end up delivered, the latter by the periodic re-check (--recheck-interval 5s)."""
    dovecot_options = {'hibernate_timeout': '2s'}

    def test_delivery_from_hibernated_session(self):
        mid = self.register('user1')
        time.sleep(3.0)  # past imap_hibernate_timeout: the session is hibernated now
        log(f'imap-hibernate holds the session: {self.dovecot.hibernated()} '
            f'({self.dovecot.processes()})')
        tag = uuid.uuid4().hex[:8]
        subjects = [f'hibernated {i} {tag}' for i in range(3)]
        for s in subjects:
            self.inject('user1', s)
            time.sleep(1.0)
        msgs = self.hook.wait_messages(3, 20, mailbox_id=mid)
        self.assertEqual([m.data.get('subject') for m in msgs], subjects)
        self.assert_signed(msgs)


class EachMessageAnnouncedTest(IntegrationCase):
    """Every message must come from its own announcement, not from the periodic re-check: with
    the re-check pushed out to 10 minutes, mail injected one at a time (so the download
    connection is reused from the pool each time) must each arrive within seconds."""
    service_options = {'extra_args': ['--recheck-interval', '10m']}

    def test_one_at_a_time_on_a_reused_download_connection(self):
        tag = uuid.uuid4().hex[:8]
        mid = self.register('user1')
        for i in range(4):
            self.inject('user1', f'single {i} {tag}')
            msgs = self.hook.wait_messages(i + 1, 5, mailbox_id=mid)
            self.assertEqual(msgs[-1].data.get('subject'), f'single {i} {tag}')


class EachMessageAnnouncedSeparateConnectionTest(EachMessageAnnouncedTest):
    """The same with downloads on a second, pooled connection, whose view of the folder lags
    until it sends a command (a message was lost this way once)."""
    service_options = {'extra_args': ['--recheck-interval', '10m', '--separate-fetch-connection']}


def big_message(subject, to_addr, attachment_bytes):
    """A multipart message with one base64 attachment of attachment_bytes (deterministic)."""
    import base64
    payload = bytes((i * 7 + 3) % 251 for i in range(attachment_bytes))
    b64 = base64.encodebytes(payload).decode().replace('\n', '\r\n')
    return (f'From: Big Sender <big@example.test>\r\nTo: {to_addr}\r\nSubject: {subject}\r\n'
            f'Message-ID: <{uuid.uuid4().hex}@example.test>\r\nMIME-Version: 1.0\r\n'
            'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            '--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee attachment\r\n'
            '--b1\r\nContent-Type: application/octet-stream\r\n'
            'Content-Disposition: attachment; filename="blob.bin"\r\n'
            'Content-Transfer-Encoding: base64\r\n\r\n' + b64 + '--b1--\r\n').encode()


class LargeMessageTest(IntegrationCase):
    def test_a_message_of_several_mebibytes_is_delivered_whole(self):
        tag = uuid.uuid4().hex[:8]
        mid = self.register('user1')
        self.dovecot.inject('user1', big_message(f'big {tag}', self.dovecot.address('user1'),
                                                 3 << 20))
        self.inject('user1', f'after big {tag}')
        msgs = self.hook.wait_messages(2, 60, mailbox_id=mid)
        self.assertEqual([m.data.get('subject') for m in msgs], [f'big {tag}', f'after big {tag}'])
        att = msgs[0].data.get('attachments') or []
        self.assertEqual([(a.get('filename'), a.get('size')) for a in att], [('blob.bin', 3 << 20)])
        self.assertFalse(msgs[0].data.get('truncated', False))


class OversizedMessageTest(IntegrationCase):
    """A message over --max-message-bytes must not block the folder: it is delivered with its
    headers only and "truncated": true, and the mail after it flows as usual."""
    service_options = {'extra_args': ['--max-message-bytes', '1M']}

    def test_oversized_message_is_delivered_as_headers_and_does_not_block(self):
        tag = uuid.uuid4().hex[:8]
        mid = self.register('user1')
        self.dovecot.inject('user1', big_message(f'huge {tag}', self.dovecot.address('user1'),
                                                 2 << 20))
        self.inject('user1', f'after huge {tag}')
        msgs = self.hook.wait_messages(2, 60, mailbox_id=mid)
        self.assertEqual([m.data.get('subject') for m in msgs],
                         [f'huge {tag}', f'after huge {tag}'])
        big = msgs[0].data
        self.assertTrue(big.get('truncated'), big.keys())
        self.assertGreater(big.get('size') or 0, 2 << 20)
        self.assertEqual(big.get('attachments'), [])
        self.assertEqual((big.get('from') or {}).get('address'), 'big@example.test')
        self.assertFalse(msgs[1].data.get('truncated', False))
        st = self.service.get_mailbox(mid)
        self.assertEqual(st['state'], 'idle', st)


if __name__ == '__main__':
    unittest.main()
