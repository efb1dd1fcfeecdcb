"""Scale-out scenario 6: credentials are unreadable in Redis (redis-cli shows ciphertext), a node
without the key refuses to start, and one with the wrong key cannot read them."""

import base64
import os
import subprocess
import unittest

from harness.fleet import FleetCase
from harness.ports import free_port
from harness.service import Service, mailbox_payload


class FleetSecretsTest(FleetCase):
    users = 1
    with_rabbitmq = False

    def test_ciphertext_in_redis_and_no_start_without_key(self):
        a = self.start_node('api-1')
        body = a.add_mailbox(mailbox_payload(self.dovecot, 'user1', mailbox_id='mb-secret',
                                             webhook={'url': self.hook.url,
                                                      'secret': 'hook-secret-xyz'}))
        a.wait_state(body['id'], 'idle')
        raw = self.redis.cli('HGET', 'el:mbx:mb-secret', 'cfg')
        password = self.dovecot.password('user1')
        self.assertIn('enc:v1:', raw)
        self.assertNotIn(password, raw)
        self.assertNotIn('hook-secret-xyz', raw)
        dump = self.redis.cli('--scan')
        for key in dump.split():
            kind = self.redis.cli('TYPE', key).strip()
            if kind == 'hash':
                self.assertNotIn(password, self.redis.cli('HGETALL', key))
            elif kind == 'string':
                self.assertNotIn(password, self.redis.cli('GET', key))

        # No key: refused at start, naming the variable.
        svc = Service(self.hook.url, self.secret, state_file=False,
                      extra_args=self.node_args('api-2', 'api'))
        self.addCleanup(svc.cleanup)
        svc.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith('EL_')}
        r = subprocess.run(svc.argv(), env=env, capture_output=True, text=True, timeout=20,
                           check=False)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn('EL_SECRET_KEY', r.stdout + r.stderr)

        # The wrong key: refused at start too, before it could claim a mailbox it cannot read.
        env['EL_SECRET_KEY'] = base64.b64encode(os.urandom(32)).decode()
        r = subprocess.run(svc.argv(), env=env, capture_output=True, text=True, timeout=20,
                           check=False)
        out = r.stdout + r.stderr
        self.assertNotEqual(r.returncode, 0, out)
        self.assertIn('cannot decrypt', out)
        self.assertNotIn(password, out)
        self.assertEqual(a.get_mailbox('mb-secret')['owner'], 'api-1')


if __name__ == '__main__':
    unittest.main()
