"""Scale-out scenario 5: a stale owner cannot move a checkpoint or deliver. The owner of the
mailboxes is frozen (SIGSTOP) past its lease; the other node takes them over and delivers the
mail that arrived meanwhile; the old owner is thawed (SIGCONT) with that mail announced on its
old IDLE connections: it delivers nothing, moves no checkpoint, and stops its sessions."""

import time
import unittest

from harness.fleet import FleetCase, log, wait_until

COUNT = 3


class FleetFencingTest(FleetCase):
    users = COUNT
    with_rabbitmq = False  # api nodes download themselves: the stale node's own fetch path

    def test_frozen_owner_is_fenced(self):
        a = self.start_node('node-a')
        ids = self.register_all(a, COUNT)
        self.wait_all_idle(a, ids)
        # b joins: fair share 2, a holds 3, within the slack of 1: a keeps them all.
        b = self.start_node('node-b')
        wait_until(lambda: len(self.nodes_view(a)) == 2, 20, what='two nodes')
        time.sleep(2)
        for mid in ids:
            self.assertEqual(a.get_mailbox(mid)['owner'], 'node-a')

        self.inject('user1', 'before freeze')
        self.wait_subjects({'mb-user1': {'before freeze'}}, 30)

        log('SIGSTOP node-a')
        a.pause()
        mark = len(a.log_text())
        self.inject('user1', 'while frozen 1')
        self.inject('user2', 'while frozen 2')

        def all_on_b():
            return all(b.get_mailbox(m)['owner'] == 'node-b' and
                       b.get_mailbox(m)['state'] == 'idle' for m in ids)
        wait_until(all_on_b, 30, interval=0.2, what='node-b owns every mailbox')
        self.wait_subjects({'mb-user1': {'while frozen 1'}, 'mb-user2': {'while frozen 2'}}, 30)
        before = {m: b.get_mailbox(m)['folders'][0]['last_uid'] for m in ids}
        deliveries_before = len(self.hook.messages())

        log('SIGCONT node-a')
        a.resume()
        wait_until(lambda: 'lease_lost' in a.log_since(mark), 20, what='node-a notices')
        time.sleep(2)
        self.inject('user3', 'after thaw')
        self.wait_subjects({'mb-user3': {'after thaw'}}, 30)
        after_log = a.log_since(mark)
        self.assertNotIn('message_delivered', after_log, 'the stale owner delivered')
        for m in ids:
            self.assertEqual(b.get_mailbox(m)['owner'], 'node-b')
        self.assertGreaterEqual(b.get_mailbox('mb-user3')['folders'][0]['last_uid'],
                                before['mb-user3'])
        for m in ('mb-user1', 'mb-user2'):
            self.assertEqual(b.get_mailbox(m)['folders'][0]['last_uid'], before[m])
        # Exactly one more delivery (the email after the thaw), and one event id per email.
        self.assertEqual(len(self.hook.messages()), deliveries_before + 1)
        self.duplicate_report()
        self.assertEqual(self.metric(a, 'el_leases_held'), 0)
        log('node-a: ' + ', '.join(l.split(' ', 2)[-1][:80] for l in after_log.splitlines()
                                    if 'lease_lost' in l or 'fetch_task_stale' in l)[:600])


if __name__ == '__main__':
    unittest.main()
