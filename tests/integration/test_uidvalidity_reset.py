"""A folder whose UIDVALIDITY changed (the server renumbered it: here Dovecot's uidlist and
indexes are deleted, as after a restore or a migration) gives exactly one mailbox.reset event
and a new baseline; the folder is never replayed, and mail arriving afterwards is delivered.

Two ways in: the change is found when the service starts again from its state file, and when a
running service reconnects after the server restart."""

import glob
import os
import time
import unittest
import uuid

from harness.base import IntegrationCase, log, make_message, wait_until

SETTLE = 1.5  # after the last expected event: time for an unwanted one (a replay) to show up


class UidvalidityResetTest(IntegrationCase):
    def renumber_inbox(self, user, old_uidvalidity):
        """With Dovecot stopped: deletes the user's INBOX uidlist and indexes so that Dovecot
        assigns a new UIDVALIDITY (derived from the clock) and new UIDs at the next sync."""
        self.assertFalse(self.dovecot.running)
        maildir = os.path.join(self.dovecot.home(user), 'Maildir')
        doomed = []
        for pattern in ('dovecot-uidlist', 'dovecot-uidlist.lock', 'dovecot.index*',
                        'dovecot.list.index*'):
            doomed += glob.glob(os.path.join(maildir, pattern))
        self.assertIn(os.path.join(maildir, 'dovecot-uidlist'), doomed,
                      f'no dovecot-uidlist in {maildir}: {os.listdir(maildir)}')
        for path in doomed:
            os.unlink(path)
        log(f'deleted {[os.path.basename(p) for p in doomed]}')
        # UIDVALIDITY is a time in seconds: make sure the clock moved past the old one.
        while time.time() < old_uidvalidity + 1.2:
            time.sleep(0.1)

    def reset_events(self, mid):
        return self.hook.events('mailbox.reset', mailbox_id=mid)

    def check_reset(self, mid, old_uv, old_subjects, offline_subject, tag):
        """Common part once Dovecot and the service run again after the renumbering."""
        st = self.service.wait_state(mid, 'idle', timeout=30)
        new_uv = self.dovecot.uidvalidity('user1')
        uids = self.dovecot.uids('user1')
        log(f'UIDVALIDITY {old_uv} -> {new_uv}; uids now {uids}; status {st}')
        self.assertNotEqual(new_uv, old_uv, 'the test failed to change the UIDVALIDITY')
        self.assertEqual(len(uids), len(old_subjects) + (1 if offline_subject else 0), uids)

        resets = self.hook.wait_for(lambda _: self.reset_events(mid), 20, 'a mailbox.reset event')
        self.assert_signed(resets)
        data = resets[0].data
        log(f'mailbox.reset data: {data}')
        self.assertEqual(data.get('folder'), 'INBOX', data)
        self.assertEqual(data.get('previous_uidvalidity'), old_uv, data)
        self.assertEqual(data.get('uidvalidity'), new_uv, data)
        # The new baseline is the top of the renumbered folder: everything in it is old news.
        self.assertEqual(data.get('last_uid'), max(uids), data)
        self.assertEqual(resets[0].json.get('mailbox_id'), mid)

        folder = next(f for f in self.service.get_mailbox(mid)['folders'] if f['name'] == 'INBOX')
        self.assertEqual(folder['uidvalidity'], new_uv, folder)
        self.assertEqual(folder['last_uid'], max(uids), folder)

        # New mail above the baseline is delivered as usual, with the new UIDVALIDITY.
        after = f'after reset {tag}'
        self.inject('user1', after)
        self.hook.wait_for(lambda _: any(m.data.get('subject') == after
                                         for m in self.hook.messages(mid)),
                           30, f'message.new {after!r}')
        time.sleep(SETTLE)

        msgs = self.hook.messages(mid)
        subjects = [m.data.get('subject') for m in msgs]
        log(f'message.new subjects: {subjects}')
        # Each old message exactly once (no replay under the new UIDVALIDITY), the offline one
        # (below the new baseline) never, the new one once.
        self.assertEqual(sorted(set(subjects)), sorted(set(old_subjects + [after])), subjects)
        by_subject = {}
        for m in msgs:
            by_subject.setdefault(m.data.get('subject'), set()).add(m.event_id)
        for s, ids in by_subject.items():
            self.assertEqual(len(ids), 1, f'{s!r} delivered as {len(ids)} different events')
        if offline_subject:
            self.assertNotIn(offline_subject, subjects)
        new = [m for m in msgs if m.data.get('subject') == after][0]
        self.assertEqual(new.data.get('uidvalidity'), new_uv, new.data)
        self.assertEqual(new.data.get('uid'), max(uids) + 1, new.data)
        self.assert_signed(msgs)

        # Exactly one reset (also none repeated by the delivery of the new message).
        self.assertEqual(len({d.event_id for d in self.reset_events(mid)}), 1,
                         [d.data for d in self.reset_events(mid)])
        self.assertTrue(self.service.running, 'the service exited')
        return new_uv

    def deliver_before(self, mid, tag, count=2):
        subjects = [f'before {i} {tag}' for i in range(count)]
        for s in subjects:
            self.inject('user1', s)
        msgs = self.hook.wait_messages(count, 30, mailbox_id=mid)
        self.assertEqual([m.data.get('subject') for m in msgs], subjects)
        old_uv = self.service.get_mailbox(mid)['folders'][0]['uidvalidity']
        self.assertEqual(old_uv, self.dovecot.uidvalidity('user1'))
        self.assertEqual({m.data.get('uidvalidity') for m in msgs}, {old_uv})
        return subjects, old_uv

    def test_reset_found_at_service_start(self):
        """Service and server both stopped while the folder is renumbered; the service starts
        again from its state file (with the old UIDVALIDITY)."""
        mid = self.register('user1')
        tag = uuid.uuid4().hex[:8]
        subjects, old_uv = self.deliver_before(mid, tag)
        # Let the checkpoint reach the state file: last_uid shows the accepted events.
        wait_until(lambda: self.service.get_mailbox(mid)['folders'][0]['last_uid'] == 2, 10,
                   what='checkpoint last_uid 2')
        self.assertEqual(self.reset_events(mid), [], 'a reset before anything was renumbered')

        rc = self.service.stop()
        self.assertEqual(rc, 0, f'service exit status after SIGTERM: {rc}')
        self.dovecot.stop()
        self.renumber_inbox('user1', old_uv)
        offline = f'offline {tag}'
        self.dovecot.inject_offline('user1', make_message(offline))
        self.dovecot.start()
        self.service.start()
        self.check_reset(mid, old_uv, subjects, offline, tag)

        # And the new baseline is durable: a restart gives no second reset and no replay.
        n_msgs = len(self.hook.messages(mid))
        self.service.restart()
        self.service.wait_state(mid, 'idle', timeout=30)
        time.sleep(SETTLE)
        self.assertEqual(len({d.event_id for d in self.reset_events(mid)}), 1)
        self.assertEqual(len(self.hook.messages(mid)), n_msgs)

    def test_reset_found_on_reconnect(self):
        """The service keeps running; the server goes away, comes back renumbered."""
        mid = self.register('user1')
        tag = uuid.uuid4().hex[:8]
        subjects, old_uv = self.deliver_before(mid, tag, count=1)
        wait_until(lambda: self.service.get_mailbox(mid)['folders'][0]['last_uid'] == 1, 10,
                   what='checkpoint last_uid 1')
        self.dovecot.stop()
        self.service.wait_state(mid, ('connecting', 'backoff'), timeout=20)
        self.renumber_inbox('user1', old_uv)
        self.dovecot.start()
        self.check_reset(mid, old_uv, subjects, None, tag)


if __name__ == '__main__':
    unittest.main()
