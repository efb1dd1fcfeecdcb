"""Scale-out scenario 4: RabbitMQ restarts, then Redis (with persistence on) restarts, while
mail keeps arriving: nothing is lost. While Redis is down the API answers 503 with a clear
error, /readyz says the registry is unavailable, and sessions stay connected."""

import time
import unittest

from harness.fleet import FleetCase, log, wait_until

COUNT = 6


class FleetRestartsTest(FleetCase):
    users = COUNT
    redis_appendonly = True

    def test_broker_and_registry_restarts_lose_nothing(self):
        api1 = self.start_node('api-1')
        api2 = self.start_node('api-2')
        self.start_node('worker-1', role='worker')
        wait_until(lambda: len(self.nodes_view(api1)) == 3, 20, what='three nodes heartbeating')
        ids = self.register_all(api1, COUNT)
        self.wait_all_idle(api1, ids)

        flow = self.start_mail_flow('restarts', 600, 0.05)
        time.sleep(2)

        log('restarting RabbitMQ')
        self.rabbit.stop()
        wait_until(lambda: api1.request('GET', '/readyz').status == 503, 15,
                   what='/readyz reports the broker down')
        r = api1.request('GET', '/readyz')
        log(f'/readyz with RabbitMQ down: {r.status} {r.text}')
        self.assertIn('queue', r.json['checks'])
        self.assertNotEqual(r.json['checks']['queue'], 'ok')
        time.sleep(2)
        self.rabbit.start()
        wait_until(lambda: api1.request('GET', '/readyz').status == 200, 30,
                   what='/readyz ready again after RabbitMQ came back')
        time.sleep(2)

        log('restarting Redis (appendonly)')
        self.redis.stop()
        r = api2.request('POST', '/v1/mailboxes',
                         {'email': 'x@example.test', 'id': 'during-outage',
                          'imap': {'host': '127.0.0.1', 'port': 1, 'security': 'none',
                                   'username': 'x', 'password': 'y'}})
        log(f'POST with Redis down: {r.status} {r.text}')
        self.assertEqual(r.status, 503, r.text)
        self.assertEqual(r.json['error']['code'], 'unavailable')
        self.assertIn('registry', r.json['error']['message'])
        wait_until(lambda: api2.request('GET', '/readyz').status == 503, 15,
                   what='/readyz reports the registry down')
        time.sleep(1.5)  # shorter than the lease: nobody loses a mailbox
        self.redis.start()
        wait_until(lambda: api2.request('GET', '/readyz').status == 200, 30,
                   what='/readyz ready again after Redis came back')

        flow.finish(timeout=90)
        self.wait_subjects(flow.subjects, 120)
        total, distinct, dups = self.duplicate_report()
        log(f'{total} deliveries for {distinct} emails; {dups} delivered twice (same event id)')
        self.assertEqual(distinct, sum(len(s) for s in flow.subjects.values()))
        for mid in ids:
            self.assertEqual(api1.get_mailbox(mid)['state'], 'idle')


if __name__ == '__main__':
    unittest.main()
