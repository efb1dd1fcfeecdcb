"""Sending through the API with a real Postfix that relays into Dovecot over LMTP: an email sent
from one registered mailbox arrives in another and is delivered to the webhook (the whole loop),
is saved in the sender's Sent folder, and is reported with message.sent; an Idempotency-Key
repeated sends once; refused and temporarily failing recipients give message.send_failed with
the SMTP reply; bad input is a 400 naming the field and sends nothing; a send accepted before a
crash is completed after the restart."""

import base64
import time
import unittest
import uuid

from harness.base import IntegrationCase, wait_until
from harness.postfix import Postfix
from harness.service import mailbox_payload


class SendCase(IntegrationCase):
    postfix_options = {}
    service_options = {'extra_args': ['--send-retry-initial', '200ms',
                                      '--send-max-attempts', '3']}

    def setUp(self):
        super().setUp()
        self.postfix = Postfix(self.dovecot, **self.postfix_options)
        self.addCleanup(self.postfix.cleanup)
        self.postfix.start()

    def smtp_settings(self, security='starttls'):
        port = self.postfix.tls_port if security == 'tls' else self.postfix.port
        s = {'host': '127.0.0.1', 'port': port, 'security': security}
        if security != 'none':
            s['tls_ca_file'] = self.postfix.ca_file
        return s

    def register_sender(self, user='user1', **kw):
        payload = mailbox_payload(self.dovecot, user)
        payload['smtp'] = self.smtp_settings(**kw)
        body = self.service.add_mailbox(payload)
        self.service.wait_state(body['id'], 'idle', timeout=30)
        return body['id']

    def send(self, mailbox_id, body, key=None, expect=202):
        headers = {'Idempotency-Key': key} if key else None
        r = self.service.request('POST', f'/v1/mailboxes/{mailbox_id}/send', body,
                                 headers=headers, timeout=30)
        if expect is not None:
            self.assertEqual(r.status, expect, r.text)
        return r

    def wait_send(self, send_id, states=('sent', 'failed'), timeout=30):
        def done():
            r = self.service.request('GET', f'/v1/sends/{send_id}')
            return r.json if r.status == 200 and r.json['state'] in states else None
        return wait_until(done, timeout, what=f'send {send_id} in {states}')

    def outcome_events(self, send_id):
        return [d for d in self.hook.deliveries()
                if d.type in ('message.sent', 'message.send_failed')
                and d.data.get('send_id') == send_id]


class SendLoopTest(SendCase):
    def test_whole_loop_sent_folder_and_event(self):
        sender = self.register_sender('user1')
        receiver = self.register('user2')
        tag = uuid.uuid4().hex[:8]
        pdf = bytes(range(256)) * 80  # 20 KB of every byte value
        body = {
            'to': [{'address': self.dovecot.address('user2'), 'name': 'Zoë Receiver'}],
            'cc': [],
            'subject': f'Grüße {tag}',
            'text': 'plain text body\nline two',
            'html': '<p>html <b>body</b><img src="cid:logo@x"></p>',
            'attachments': [
                {'filename': 'report.pdf', 'content_type': 'application/pdf',
                 'content_base64': base64.b64encode(pdf).decode()},
                {'filename': 'logo.png', 'content_type': 'image/png', 'content_id': 'logo@x',
                 'content_base64': base64.b64encode(b'\x89PNG fake').decode()}],
            'headers': {'X-Campaign': 'c-42'},
        }
        r = self.send(sender, body)
        self.assertEqual(r.headers.get('location'), f'/v1/sends/{r.json["send_id"]}')
        send_id, message_id = r.json['send_id'], r.json['message_id']

        # The receiver's mailbox gets it through Postfix -> LMTP -> IDLE -> webhook.
        msgs = self.hook.wait_messages(1, 30, mailbox_id=receiver)
        m = msgs[0].data
        self.assertEqual(m['subject'], f'Grüße {tag}')
        self.assertEqual(m['message_id'], message_id)
        self.assertEqual(m['from']['address'], self.dovecot.address('user1'))
        self.assertEqual(m['to'][0]['name'], 'Zoë Receiver')
        self.assertIn('plain text body', m['text'])
        by_name = {a['filename']: a for a in m['attachments']}
        self.assertEqual(base64.b64decode(by_name['report.pdf']['content_base64']), pdf)
        self.assertEqual(by_name['logo.png'].get('content_id'), 'logo@x')
        self.assertIn(['X-Campaign', 'c-42'], m['headers'])

        st = self.wait_send(send_id)
        self.assertEqual(st['state'], 'sent', st)
        self.assertTrue(st['queue_id'], st)
        self.assertEqual(st['reply']['code'], 250)
        self.assertEqual(st['sent_folder'], {'state': 'appended', 'folder': 'Sent'})
        self.assertEqual(st['attempts'], 1)
        events = self.outcome_events(send_id)
        self.assertEqual([e.type for e in events], ['message.sent'])
        self.assertEqual(events[0].data['queue_id'], st['queue_id'])
        self.assertIn(st['queue_id'], self.postfix.log())
        self.assert_signed(events)

        # The copy in the sender's Sent folder, marked read.
        sent = self.dovecot.flags('user1', 'Sent')
        self.assertEqual(len(sent), 1, sent)
        self.assertIn('\\Seen', list(sent.values())[0])
        metrics = self.service.metrics().text
        self.assertIn('el_sends_total{outcome="sent"} 1', metrics)

    def test_idempotency_key_sends_once(self):
        sender = self.register_sender('user1')
        receiver = self.register('user2')
        body = {'to': self.dovecot.address('user2'), 'subject': 'once', 'text': 'hello'}
        first = self.send(sender, body, key='order-17').json
        second = self.send(sender, body, key='order-17').json
        self.assertEqual(second['send_id'], first['send_id'])
        self.assertEqual(second['message_id'], first['message_id'])
        self.assertTrue(second.get('duplicate'))
        self.hook.wait_messages(1, 30, mailbox_id=receiver)
        self.wait_send(first['send_id'])
        third = self.send(sender, body, key='order-17').json
        self.assertEqual(third['send_id'], first['send_id'])
        self.assertEqual(third['state'], 'sent')
        time.sleep(1.5)
        self.assertEqual(len(self.hook.messages(receiver)), 1)
        self.assertEqual(self.dovecot.message_count('user2'), 1)
        # The same key with another body: 409, nothing sent.
        other = dict(body, subject='twice?')
        r = self.send(sender, other, key='order-17', expect=409)
        self.assertEqual(r.json['error']['field'], 'Idempotency-Key')
        # Without a key, the same body twice is two emails.
        self.send(sender, body)
        self.send(sender, body)
        self.hook.wait_messages(3, 30, mailbox_id=receiver)

    def test_refused_and_temporary_recipients(self):
        sender = self.register_sender('user1')
        refused = self.send(sender, {'to': 'refused@localhost', 'subject': 'x', 'text': 'y'}).json
        st = self.wait_send(refused['send_id'])
        self.assertEqual(st['state'], 'failed', st)
        self.assertEqual(st['attempts'], 1, 'a permanent refusal was retried')
        self.assertEqual(st['reply']['code'], 550)
        self.assertIn('refused by policy', st['reply']['text'])
        self.assertEqual(st['error']['code'], 'rejected')
        ev = wait_until(lambda: self.outcome_events(refused['send_id']), 10, what='event')
        self.assertEqual(ev[0].type, 'message.send_failed')
        self.assertEqual(ev[0].data['reply']['code'], 550)
        self.assertNotIn('sent_folder', st)

        temp = self.send(sender, {'to': 'tempfail@localhost', 'subject': 'x', 'text': 'y'}).json
        st = self.wait_send(temp['send_id'], timeout=60)
        self.assertEqual(st['state'], 'failed', st)
        self.assertEqual(st['attempts'], 3)
        self.assertEqual(st['reply']['code'], 451)
        self.assertIn('gave up after 3 attempts', st['error']['message'])
        self.assertEqual(self.dovecot.message_count('user1', 'Sent'), 0)

    def test_bad_input_is_400_and_nothing_sent(self):
        sender = self.register_sender('user1')
        plain = self.register('user3')  # no smtp settings
        good = {'to': self.dovecot.address('user2'), 'subject': 's', 'text': 't'}
        cases = [
            ({'subject': 's', 'text': 't'}, 'to'),
            ({'to': 'not an address', 'text': 't'}, 'to'),
            ({'to': [{'address': 'a@b.c'}, {'address': 'x@@y'}], 'text': 't'}, 'to[1].address'),
            ({'to': 'a@b.c', 'attachments': [{'filename': 'a.bin', 'content_base64': '!!'}]},
             'attachments[0].content_base64'),
            ({'to': 'a@b.c', 'attachments': [{'content_base64': 'QQ=='}]},
             'attachments[0].filename'),
            ({'to': 'a@b.c', 'headers': {'Subject': 'sneaky'}}, 'headers.Subject'),
            ({'to': 'a@b.c', 'headers': {'X-A': 'line\r\nBcc: x@y.z'}}, 'headers.X-A'),
            ({'to': 'a@b.c', 'colour': 'red'}, 'colour'),
        ]
        for body, field in cases:
            r = self.send(sender, body, expect=400)
            self.assertEqual(r.json['error']['field'], field, (body, r.text))
        r = self.send(plain, good, expect=400)
        self.assertEqual(r.json['error']['field'], 'smtp')
        r = self.send('no-such-mailbox', good, expect=404)
        r = self.service.request('GET', '/v1/sends/no-such-send')
        self.assertEqual(r.status, 404)
        time.sleep(0.5)
        self.assertEqual(self.postfix.deliveries(), [])
        self.assertEqual([d for d in self.hook.deliveries() if d.type.startswith('message.s')], [])


class SendSizeTest(SendCase):
    postfix_options = {'message_size_limit': 100 * 1024}

    def test_message_over_size_is_400_before_sending(self):
        sender = self.register_sender('user1')
        big = base64.b64encode(b'x' * 150 * 1024).decode()
        r = self.send(sender, {'to': self.dovecot.address('user2'), 'text': 'big',
                               'attachments': [{'filename': 'big.bin',
                                                'content_base64': big}]}, expect=400)
        self.assertEqual(r.json['error']['field'], 'attachments')
        self.assertIn('102400', r.json['error']['message'])
        small = self.send(sender, {'to': self.dovecot.address('user2'), 'text': 'small'}).json
        self.assertEqual(self.wait_send(small['send_id'])['state'], 'sent')
        self.assertEqual(len(self.postfix.deliveries()), 1)


class SendCrashTest(SendCase):
    service_options = {'extra_args': ['--send-retry-initial', '300ms',
                                      '--send-max-attempts', '1000']}

    def test_send_accepted_before_a_crash_completes_after_restart(self):
        sender = self.register_sender('user1', security='tls')
        receiver = self.register('user2')
        self.postfix.stop()
        sent = self.send(sender, {'to': self.dovecot.address('user2'), 'subject': 'survivor',
                                  'text': 'accepted while the SMTP server was down'}).json
        wait_until(lambda: self.service.request('GET', f'/v1/sends/{sent["send_id"]}')
                   .json['attempts'] >= 2, 20, what='retries while Postfix is down')
        self.service.kill()
        self.postfix.start()
        self.service.start()
        msgs = self.hook.wait_messages(1, 60, mailbox_id=receiver)
        self.assertEqual(msgs[0].data['subject'], 'survivor')
        st = self.wait_send(sent['send_id'])
        self.assertEqual(st['state'], 'sent', st)
        self.assertEqual(st['reply']['code'], 250)
        self.assertEqual(st['error'] if 'error' in st else None, None)
        time.sleep(1)
        self.assertEqual(len(self.hook.messages(receiver)), 1, 'sent twice')


if __name__ == '__main__':
    unittest.main()
