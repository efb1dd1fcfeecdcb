"""The command line, without any IMAP server: --version, `parse FILE.eml`, refused flags,
environment variables and config keys (exit 2, named), the non-loopback/no-token guard,
JSON logs, a clean exit on SIGTERM, and no secret (IMAP password, webhook secret, API token)
in the log."""

import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import uuid

from harness.ports import free_port
from harness.service import require_binary

HOST = '127.0.0.1'
FIXTURES = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', 'fixtures', 'mime'))
RUN_TIMEOUT = 30  # for commands expected to exit by themselves


def clean_env(**extra):
    """The environment without EL_ variables (the service refuses unknown ones), plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('EL_')}
    env.update(extra)
    return env


def closed_port():
    """A loopback port nobody listens on (bound, never listened, then released)."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.create_connection((HOST, port), timeout=1):
                continue  # somebody listens there
        except OSError:
            return port
    raise RuntimeError('no closed port found')


def http_call(port, method, path, body=None, token=None, timeout=5):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f'http://{HOST}:{port}{path}', data=data, method=method)
    if data is not None:
        req.add_header('Content-Type', 'application/json')
    if token:
        req.add_header('Authorization', f'Bearer {token}')
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.read().decode('utf-8', errors='replace')
    except urllib.error.HTTPError as e:
        return e.code, (e.read() if e.fp is not None else b'').decode('utf-8', errors='replace')


class Served:
    """One `email-listener serve` with stdout and stderr in separate files; port chosen here."""

    def __init__(self, testcase, args, listen_host=HOST, env=None):
        self.bin = require_binary()
        self.dir = tempfile.mkdtemp(prefix='el-cli-')
        testcase.addCleanup(shutil.rmtree, self.dir, True)
        testcase.addCleanup(self.kill)
        self.port = free_port()
        self.argv = [self.bin, 'serve', '--listen', f'{listen_host}:{self.port}'] + list(args)
        self.out_path = os.path.join(self.dir, 'stdout')
        self.err_path = os.path.join(self.dir, 'stderr')
        with open(self.out_path, 'wb') as out, open(self.err_path, 'wb') as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, env=env or clean_env(), cwd=self.dir)

    def wait_healthy(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f'service exited with {self.proc.returncode}: {self.stderr()}')
            try:
                status, body = http_call(self.port, 'GET', '/healthz', timeout=2)
                if status == 200:
                    return json.loads(body)
            except (OSError, http.client.HTTPException, ValueError):
                pass
            time.sleep(0.05)
        raise AssertionError(f'no /healthz within {timeout}s; stderr: {self.stderr()[-3000:]}')

    def terminate(self, timeout=15):
        """SIGTERM; returns the exit status (None if it did not exit in time; then it is killed)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def _read(self, path):
        with open(path, 'rb') as f:
            return f.read().decode('utf-8', errors='replace')

    def stderr(self):
        return self._read(self.err_path)

    def stdout(self):
        return self._read(self.out_path)


class CliTest(unittest.TestCase):
    def setUp(self):
        self.bin = require_binary()

    def run_cli(self, *args, env=None, timeout=RUN_TIMEOUT):
        return subprocess.run([self.bin, *args], stdin=subprocess.DEVNULL, capture_output=True,
                              env=env or clean_env(), timeout=timeout, check=False, text=True,
                              errors='replace')

    # ---- version and parse -------------------------------------------------------------------
    def test_version(self):
        r = self.run_cli('--version')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout.strip(), r'^email-listener \d+\.\d+\.\d+$', r.stdout)

    def parse_fixture(self, name):
        path = os.path.join(FIXTURES, name)
        self.assertTrue(os.path.isfile(path), path)
        r = self.run_cli('parse', path)
        self.assertEqual(r.returncode, 0, f'parse {name}: {r.stderr}')
        try:
            return json.loads(r.stdout)
        except ValueError as exc:
            self.fail(f'parse {name} printed no valid JSON ({exc}): {r.stdout[:500]!r}')

    def test_parse_rfc2047_subject(self):
        d = self.parse_fixture('subject_utf8_b.eml')
        self.assertEqual(d['subject'], 'Привет, мир! 👋')
        self.assertEqual(d['from'], {'name': 'Дмитрий Иванов', 'address': 'dima@example.ru'})
        self.assertEqual(d['message_id'], 'utf8b@example.ru')
        self.assertEqual(d['date'], '2024-03-05T13:30:00.000Z')
        self.assertEqual(d['text'].strip(), 'Привет!')
        self.assertEqual(d['attachments'], [])

    def test_parse_multipart_with_attachments(self):
        d = self.parse_fixture('mixed_attachments.eml')
        self.assertEqual(d['subject'], 'Monthly report')
        self.assertEqual(d['text'].strip(), 'Report attached.')
        self.assertIn('<p>Report attached.</p>', d['html'])
        names = [a['filename'] for a in d['attachments']]
        self.assertIn('report.pdf', names)
        pdf = d['attachments'][names.index('report.pdf')]
        self.assertEqual(pdf['content_type'], 'application/pdf')
        self.assertEqual(pdf['disposition'], 'attachment')
        content = base64.b64decode(pdf['content_base64'])
        self.assertEqual(len(content), pdf['size'])
        self.assertTrue(content.startswith(b'%PDF-'), content[:16])
        self.assertEqual([a['address'] for a in d['to']], ['bob@example.org', 'carol@example.org'])

    def test_parse_rfc2231_filenames(self):
        d = self.parse_fixture('rfc2231_filename.eml')
        self.assertEqual([a['filename'] for a in d['attachments']],
                         ['Годовой отчёт 2023.pdf', 'Straße über.txt', 'résumé.doc'])

    def test_parse_missing_file(self):
        missing = os.path.join(tempfile.gettempdir(), f'no-such-{uuid.uuid4().hex}.eml')
        r = self.run_cli('parse', missing)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(missing, r.stderr)
        self.assertEqual(r.stdout.strip(), '', 'printed something on stdout for a missing file')

    # ---- refused configuration ---------------------------------------------------------------
    def test_unknown_flag(self):
        r = self.run_cli('serve', '--no-such-flag')
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn('--no-such-flag', r.stderr)

    def test_non_loopback_without_token_refused(self):
        port = free_port()
        r = self.run_cli('serve', '--listen', f'0.0.0.0:{port}')
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn('token', r.stderr.lower())

    def test_non_loopback_with_insecure_no_auth_starts(self):
        s = Served(self, ['--insecure-no-auth'], listen_host='0.0.0.0')
        self.assertEqual(s.wait_healthy(), {'status': 'ok'})
        # No token configured: the API is open (queried over loopback only).
        status, body = http_call(s.port, 'GET', '/v1/mailboxes')
        self.assertEqual(status, 200, body)
        self.assertEqual(s.terminate(), 0, s.stderr())

    def test_unknown_env_variable_refused(self):
        r = self.run_cli('serve', '--listen', f'{HOST}:{free_port()}',
                         env=clean_env(EL_FOO='bar'))
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn('EL_FOO', r.stderr)

    def test_config_unknown_key_refused(self):
        d = tempfile.mkdtemp(prefix='el-cli-')
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, 'config.json')
        with open(path, 'w', encoding='utf-8') as f:
            json.dump({'webhook_url': f'http://{HOST}:9/hook', 'log_levle': 'debug'}, f)
        r = self.run_cli('serve', '--listen', f'{HOST}:{free_port()}', '--config', path)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn('log_levle', r.stderr)

    def test_config_known_keys_accepted(self):
        """The same file without the typo starts: the refusal above is about the key."""
        d = tempfile.mkdtemp(prefix='el-cli-')
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, 'config.json')
        with open(path, 'w', encoding='utf-8') as f:
            json.dump({'webhook_url': f'http://{HOST}:9/hook', 'log_level': 'debug'}, f)
        s = Served(self, ['--config', path])
        s.wait_healthy()
        self.assertEqual(s.terminate(), 0, s.stderr())

    # ---- logs and shutdown -------------------------------------------------------------------
    def test_json_logs_sigterm_and_no_secrets(self):
        password = 'pw-' + uuid.uuid4().hex
        hook_secret = 'whsec-' + uuid.uuid4().hex
        token = 'tok-' + uuid.uuid4().hex
        imap_port = closed_port()
        s = Served(self, ['--log-format', 'json', '--log-level', 'debug',
                          '--webhook-url', f'http://{HOST}:{closed_port()}/hook',
                          '--webhook-secret', hook_secret, '--api-token', token,
                          '--backoff-initial', '200ms', '--backoff-max', '1s',
                          '--connect-timeout', '2s'])
        s.wait_healthy()
        status, body = http_call(s.port, 'GET', '/v1/mailboxes')
        self.assertEqual(status, 401, 'API answered without the token')
        payload = {'id': 'cli-secret', 'email': 'someone@example.test',
                   'imap': {'host': HOST, 'port': imap_port, 'security': 'none',
                            'username': 'someone', 'password': password}}
        status, body = http_call(s.port, 'POST', '/v1/mailboxes', payload, token=token)
        self.assertEqual(status, 201, body)
        self.assertNotIn(password, body)

        # The connection is refused: the mailbox backs off with an error, which gets logged.
        deadline = time.monotonic() + 20
        st = None
        while time.monotonic() < deadline:
            status, body = http_call(s.port, 'GET', '/v1/mailboxes/cli-secret', token=token)
            st = json.loads(body) if status == 200 else body
            if isinstance(st, dict) and st.get('state') == 'backoff' and st.get('last_error'):
                break
            time.sleep(0.1)
        self.assertIsInstance(st, dict, st)
        self.assertEqual(st.get('state'), 'backoff', st)
        self.assertNotIn(password, body)
        # A few retries, each logged.
        time.sleep(2.0)
        status, _ = http_call(s.port, 'DELETE', '/v1/mailboxes/cli-secret', token=token)
        self.assertEqual(status, 204)

        rc = s.terminate()
        err, out = s.stderr(), s.stdout()
        self.assertEqual(rc, 0, f'exit status after SIGTERM: {rc}; stderr tail: {err[-2000:]}')

        lines = [ln for ln in err.split('\n') if ln != '']
        self.assertGreaterEqual(len(lines), 4, err)
        events = []
        for ln in lines:
            try:
                obj = json.loads(ln)
            except ValueError:
                self.fail(f'stderr line is not JSON: {ln!r}')
            self.assertIsInstance(obj, dict, ln)
            for key in ('ts', 'level', 'event'):
                self.assertIn(key, obj, ln)
            events.append(obj)
        self.assertEqual(out.strip(), '', f'unexpected stdout: {out[:500]!r}')
        names = [e['event'] for e in events]
        self.assertIn('started', names)
        self.assertIn('shutdown', names)
        # Something about the refused connection was logged (the test must have produced it).
        refused = [e for e in events if e.get('mailbox') == 'cli-secret'
                   and e['level'] in ('warn', 'error') and str(imap_port) in str(e.get('error'))]
        self.assertTrue(refused, f'no warn/error line for the refused IMAP connection: {names}')

        whole = err + out
        for name, secret in (('IMAP password', password), ('webhook secret', hook_secret),
                             ('API token', token)):
            self.assertNotIn(secret, whole, f'the {name} appears in the log')
            # Also not a prefix of it (e.g. truncated or partially masked).
            self.assertNotIn(secret[:12], whole, f'a part of the {name} appears in the log')

    def test_text_log_has_no_secrets(self):
        """The same in the default text format (key=value lines)."""
        password = 'pw-' + uuid.uuid4().hex
        hook_secret = 'whsec-' + uuid.uuid4().hex
        token = 'tok-' + uuid.uuid4().hex
        s = Served(self, ['--log-level', 'debug',
                          '--webhook-url', f'http://{HOST}:{closed_port()}/hook',
                          '--webhook-secret', hook_secret, '--api-token', token,
                          '--backoff-initial', '200ms', '--backoff-max', '1s'])
        s.wait_healthy()
        payload = {'id': 'cli-text', 'email': 'someone@example.test',
                   'imap': {'host': HOST, 'port': closed_port(), 'security': 'tls',
                            'username': 'someone', 'password': password}}
        status, body = http_call(s.port, 'POST', '/v1/mailboxes', payload, token=token)
        self.assertEqual(status, 201, body)
        # A PUT that changes the password, and a wrong token: both paths that could log input.
        payload['imap']['password'] = password + '-2'
        status, body = http_call(s.port, 'PUT', '/v1/mailboxes/cli-text', payload, token=token)
        self.assertEqual(status, 200, body)
        status, _ = http_call(s.port, 'GET', '/v1/mailboxes', token=token + 'x')
        self.assertEqual(status, 401)
        time.sleep(2.0)
        rc = s.terminate()
        text = s.stderr() + s.stdout()
        self.assertEqual(rc, 0, text[-2000:])
        self.assertTrue(re.search(r'cli-text', text), f'mailbox never logged: {text[-2000:]}')
        for name, secret in (('IMAP password', password), ('webhook secret', hook_secret),
                             ('API token', token)):
            self.assertNotIn(secret[:12], text, f'the {name} appears in the log')


if __name__ == '__main__':
    unittest.main()
