"""--secret-key: the state file holds the credentials sealed (AES-256-GCM), a restart with the key
resumes delivery, a restart without it is refused with a message naming EL_SECRET_KEY, and the
key never reaches a log line."""

import unittest
import uuid

from harness.base import IntegrationCase

KEY = 'MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY='


class SecretKeyTest(IntegrationCase):
    service_options = {'extra_args': ['--secret-key', KEY]}

    def test_credentials_sealed_and_key_required(self):
        mid = self.register('user1')
        password = self.dovecot.password('user1')
        with open(self.service.state_file, encoding='utf-8') as f:
            state = f.read()
        self.assertIn('enc:v1:', state)
        self.assertNotIn(password, state)
        self.assertNotIn(self.secret, state)

        # Restart with the key: the mailbox resumes and delivers.
        self.service.stop()
        self.service.start()
        self.service.wait_state(mid, 'idle', timeout=20)
        tag = uuid.uuid4().hex[:8]
        self.inject('user1', f'sealed {tag}')
        msgs = self.hook.wait_messages(1, 20, mailbox_id=mid)
        self.assertEqual(msgs[0].data.get('subject'), f'sealed {tag}')

        # Without the key the state cannot be read: refuse to start, say why.
        self.service.stop()
        self.service.extra_args = [a for a in self.service.extra_args if a not in ('--secret-key', KEY)]
        with self.assertRaises(RuntimeError) as ctx:
            self.service.start(timeout=10)
        self.assertIn('EL_SECRET_KEY', str(ctx.exception))

        # The service itself never logged the key (the harness's own start lines aside).
        own_lines = [l for l in self.service.log_text().splitlines() if not l.startswith('=====')]
        self.assertFalse([l for l in own_lines if KEY in l or password in l])


if __name__ == '__main__':
    unittest.main()
