"""Scenario 5: the application is down (503, then port closed) while mail arrives; once it is
back every event arrives, in UID order."""

import time
import unittest
import uuid

from harness.base import IntegrationCase, log


class WebhookDownTest(IntegrationCase):
    def test_events_wait_for_the_application(self):
        mid = self.register('user1')
        tag = uuid.uuid4().hex[:8]
        subjects = [f'down {i} {tag}' for i in range(5)]
        self.hook.set_status(503)
        for s in subjects:
            self.inject('user1', s)
            time.sleep(0.2)
        refused = self.hook.wait_for(
            lambda ds: [d for d in ds if d.status == 503 and d.type == 'message.new'], 20,
            'a refused delivery attempt')
        log(f'first refused attempt: {refused[0].data.get("subject")!r}')
        time.sleep(2.0)
        self.hook.stop()  # now the port refuses connections
        time.sleep(3.0)
        self.assertEqual(self.hook.messages(mid), [], 'accepted while down?')
        attempts_503 = len([d for d in self.hook.deliveries() if d.status == 503])
        self.hook.set_status(200)
        self.hook.start()
        log(f'receiver back after {attempts_503} refused attempts')

        msgs = self.hook.wait_messages(5, 60, mailbox_id=mid)
        self.assertEqual([m.data.get('subject') for m in msgs], subjects)
        uids = [m.data.get('uid') for m in msgs]
        self.assertEqual(uids, sorted(set(uids)), uids)
        self.assert_signed(msgs)
        refused_ids = {d.event_id for d in self.hook.deliveries() if not d.accepted}
        self.assertIn(msgs[0].event_id, refused_ids, 'the first event was never refused?')
        log('attempt headers of accepted events: ' + ', '.join(str(m.attempt) for m in msgs))
        # Every attempt for one event carries the same event id; no uid was attempted before
        # the previous uid was accepted (order per folder).
        accepted_uids = set()
        for d in self.hook.deliveries():
            if d.type != 'message.new':
                continue
            uid = d.data.get('uid')
            earlier = [u for u in uids if u < uid]
            self.assertTrue(set(earlier) <= accepted_uids,
                            f'uid {uid} attempted before {sorted(set(earlier) - accepted_uids)} '
                            'was accepted')
            if d.accepted:
                accepted_uids.add(uid)
        ids = {}
        for d in self.hook.deliveries():
            if d.type == 'message.new':
                ids.setdefault(d.data.get('uid'), set()).add(d.event_id)
        self.assertTrue(all(len(v) == 1 for v in ids.values()), ids)


if __name__ == '__main__':
    unittest.main()
