"""Scale-out scenario 2: mail flows into 60 mailboxes held by two api nodes; one api node is
SIGKILLed: its mailboxes are back in service on the other within the lease time plus one
reconnect, every email is delivered, and duplicates only ever carry the same event id."""

import time
import unittest

from harness.fleet import TIME_FACTOR, FleetCase, log, wait_until

COUNT = 60
LEASE_S = 4


class FleetFailoverTest(FleetCase):
    users = COUNT

    def test_sigkill_api_node_loses_nothing(self):
        api1 = self.start_node('api-1')
        api2 = self.start_node('api-2')
        self.start_node('worker-1', role='worker')
        wait_until(lambda: len(self.nodes_view(api1)) == 3, 20, what='three nodes heartbeating')
        ids = self.register_all(api2, COUNT)
        self.wait_all_idle(api2, ids, timeout=90)
        wait_until(lambda: self.nodes_view(api2)['api-1']['mailboxes'] > 0, 20,
                   what='api-1 holds mailboxes')
        victims = [m for m in ids if api2.get_mailbox(m)['owner'] == 'api-1']
        log(f'api-1 holds {len(victims)} mailboxes')

        flow = self.start_mail_flow('failover', 4 * COUNT, 0.02)
        time.sleep(2)
        log('SIGKILL api-1')
        killed_at = time.monotonic()
        self.nodes['api-1'].kill()

        # Within the lease plus a tick of the survivor the mailboxes are claimed; then each
        # session needs one login (how long that takes is the mail server's: dozens of TLS
        # logins at once, and much slower under the sanitizers).
        wait_until(lambda: all(api2.get_mailbox(m)['owner'] == 'api-2' for m in victims), 30,
                   interval=0.1, what="api-1's mailboxes claimed by api-2")
        claimed = time.monotonic() - killed_at
        wait_until(lambda: all(api2.get_mailbox(m)['state'] == 'idle' for m in victims), 60,
                   interval=0.2, what="api-1's mailboxes idle on api-2")
        idle = time.monotonic() - killed_at
        log(f"api-1's {len(victims)} mailboxes claimed by api-2 {claimed:.1f}s after SIGKILL, "
            f'all idle after {idle:.1f}s (lease {LEASE_S}s)')
        self.assertLess(claimed, (LEASE_S + 3) * TIME_FACTOR,
                        'take-over slower than the lease and a tick')
        flow.finish(timeout=60)
        self.wait_subjects(flow.subjects, 90)
        total, distinct, dups = self.duplicate_report()
        log(f'deliveries: {total} accepted for {distinct} emails; {dups} emails delivered more '
            f'than once, each under one event id')
        self.assertEqual(distinct, sum(len(s) for s in flow.subjects.values()))


if __name__ == '__main__':
    unittest.main()
