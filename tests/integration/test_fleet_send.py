"""Scale-out scenario: sending through a fleet. Sends are stored in Redis and claimed per send:
an email accepted by one api node while the SMTP server is down, whose node is then SIGKILLed,
is sent by the other node once the server is back, exactly once; an Idempotency-Key repeated on
the other node answers the same send; GET /v1/sends/{id} answers on every node."""

import unittest

from harness.fleet import TIME_FACTOR, FleetCase, wait_until
from harness.postfix import Postfix
from harness.service import mailbox_payload


class FleetSendTest(FleetCase):
    users = 3
    with_rabbitmq = False

    def test_send_survives_its_node_and_keys_are_fleet_wide(self):
        postfix = Postfix(self.dovecot)
        self.addCleanup(postfix.cleanup)
        postfix.start()
        fast = ['--send-retry-initial', '300ms', '--send-max-attempts', '1000']
        api1 = self.start_node('api-1', extra=fast)
        api2 = self.start_node('api-2', extra=fast)
        wait_until(lambda: len(self.nodes_view(api1)) == 2, 20, what='two nodes heartbeating')
        payload = mailbox_payload(self.dovecot, 'user1', mailbox_id='mb-sender')
        payload['smtp'] = {'host': '127.0.0.1', 'port': postfix.port, 'security': 'starttls',
                           'tls_ca_file': postfix.ca_file}
        api1.add_mailbox(payload)
        api1.add_mailbox(mailbox_payload(self.dovecot, 'user2', mailbox_id='mb-receiver'))
        self.wait_all_idle(api1, ['mb-sender', 'mb-receiver'], timeout=30 * TIME_FACTOR)

        postfix.stop()
        body = {'to': self.dovecot.address('user2'), 'subject': 'fleet send', 'text': 'hi'}
        r = api1.request('POST', '/v1/mailboxes/mb-sender/send', body,
                         headers={'Idempotency-Key': 'k-1'})
        self.assertEqual(r.status, 202, r.text)
        send_id = r.json['send_id']
        # The same key through the other node: the same send, from Redis.
        again = api2.request('POST', '/v1/mailboxes/mb-sender/send', body,
                             headers={'Idempotency-Key': 'k-1'})
        self.assertEqual(again.status, 202, again.text)
        self.assertEqual(again.json['send_id'], send_id)
        wait_until(lambda: api2.request('GET', f'/v1/sends/{send_id}').json['attempts'] >= 2,
                   20 * TIME_FACTOR, what='retries while Postfix is down')

        api1.kill()
        postfix.start()
        # api-2 takes the send over once api-1's claim expires (two leases, at least 15 s; the
        # scan runs every 5 s), and sends it once.
        def sent():
            j = api2.request('GET', f'/v1/sends/{send_id}').json
            return j if j['state'] == 'sent' else None
        st = wait_until(sent, 90 * TIME_FACTOR, what='the send completed by api-2')
        self.assertEqual(st['reply']['code'], 250)
        wait_until(lambda: self.dovecot.message_count('user2') >= 1, 20, what='delivery')
        events = [d for d in self.hook.deliveries() if d.type == 'message.sent']
        self.assertEqual({e.data['send_id'] for e in events}, {send_id})
        self.assertEqual(self.dovecot.message_count('user2'), 1, 'sent more than once')
        self.assertEqual(self.dovecot.message_count('user1', 'Sent'), 1)


if __name__ == '__main__':
    unittest.main()
