"""Scenario 2: SIGKILL the service while mail keeps arriving, restart it on the same state file:
every email is delivered, none lost; duplicates only with the same event id."""

import collections
import threading
import time
import unittest
import uuid

from harness.base import IntegrationCase, log

COUNT = 40
INTERVAL = 0.1  # 40 messages over about 4-5 s


class CrashRestartTest(IntegrationCase):
    def test_sigkill_while_mail_arrives(self):
        mid = self.register('user1')
        tag = uuid.uuid4().hex[:8]
        subjects = [f'crash {i:02d} {tag}' for i in range(COUNT)]
        injected, errors = [], []

        def injector():
            try:
                for s in subjects:
                    self.inject('user1', s)
                    injected.append(s)
                    time.sleep(INTERVAL)
            except Exception as exc:  # pylint: disable=broad-except
                errors.append(exc)

        t = threading.Thread(target=injector, name='injector', daemon=True)
        t.start()
        for when in (1.2, 1.3):  # two crashes while mail keeps arriving
            time.sleep(when)
            log(f'SIGKILL after {len(injected)} injected, '
                f'{len(self.hook.unique_messages(mid))} delivered')
            self.service.kill()
            time.sleep(0.5)
            self.service.start()
        t.join(timeout=60)
        self.assertFalse(t.is_alive(), 'injector did not finish')
        self.assertEqual(errors, [])
        self.assertEqual(len(injected), COUNT)

        def all_there(_):
            got = {m.data.get('subject') for m in self.hook.messages(mid)}
            return set(subjects) <= got
        try:
            self.hook.wait_for(all_there, 60, 'every subject delivered')
        finally:
            got = {m.data.get('subject') for m in self.hook.messages(mid)}
            missing = sorted(set(subjects) - got)
            if missing:
                log(f'missing {len(missing)}: {missing}')
        accepted = self.hook.messages(mid)
        ids_by_subject = collections.defaultdict(set)
        for m in accepted:
            ids_by_subject[m.data.get('subject')].add(m.event_id)
        for s in subjects:
            self.assertEqual(len(ids_by_subject[s]), 1,
                             f'{s!r} delivered under several event ids: {ids_by_subject[s]}')
        unique = self.hook.unique_messages(mid)
        duplicates = len(accepted) - len(unique)
        print(f'\nDUPLICATES: {duplicates} of {len(accepted)} accepted deliveries '
              f'({len(unique)} distinct events, {COUNT} sent)', flush=True)
        uids = [m.data.get('uid') for m in unique]
        self.assertEqual(uids, sorted(uids), f'first deliveries out of UID order: {uids}')
        self.assertEqual(len(set(uids)), COUNT, 'one uid per message expected')
        self.assert_signed(accepted)
        # The registration survived the crashes (state file).
        st = self.service.get_mailbox(mid)
        self.assertIn(st.get('state'), ('idle', 'connecting', 'polling'), st)
        self.assertEqual(len(self.dovecot.unseen_uids('user1')), COUNT)


if __name__ == '__main__':
    unittest.main()
