"""Runs build/email-listener for integration tests: start with a state file and flags, wait for
/healthz, stop (SIGTERM) or SIGKILL it, restart it on the same port, and call its HTTP API with
urllib.

The binary: $EMAIL_LISTENER_BIN (CTest sets it), else <source>/build/email-listener. Variables
starting with EL_ are removed from the child's environment, because the service refuses unknown
EL_ variables.
"""

import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from harness.ports import free_port

HOST = '127.0.0.1'
SOURCE_DIR = os.environ.get('EMAIL_LISTENER_SOURCE_DIR') or os.path.abspath(
    os.path.join(os.path.dirname(__file__), '..', '..', '..'))

# Short timers so that reconnects and retries happen within a test's time.
FAST_FLAGS = [
    '--backoff-initial', '200ms', '--backoff-max', '2s', '--auth-retry', '3s',
    '--webhook-backoff-initial', '100ms', '--webhook-backoff-max', '1s',
    '--recheck-interval', '5s', '--connect-timeout', '5s', '--command-timeout', '10s',
    '--webhook-timeout', '5s',
]


def binary_path():
    return os.environ.get('EMAIL_LISTENER_BIN') or os.path.join(SOURCE_DIR, 'build', 'email-listener')


def require_binary():
    """Skips the calling test when there is no binary (a run outside CTest before a build)."""
    path = binary_path()
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest(f'{path} not built (cmake --build build), or set EMAIL_LISTENER_BIN')
    return path


class ApiError(AssertionError):
    pass


class Response:
    def __init__(self, status, body, headers):
        self.status = status
        self.body = body          # bytes
        self.headers = headers    # lower-case names

    @property
    def json(self):
        try:
            return json.loads(self.body.decode('utf-8'))
        except (UnicodeDecodeError, ValueError):
            return None

    @property
    def text(self):
        return self.body.decode('utf-8', errors='replace')

    def __repr__(self):
        return f'<Response {self.status} {self.text[:300]!r}>'


class Service:
    """One email-listener process. The port and state file stay the same across restarts."""

    def __init__(self, webhook_url, webhook_secret, state_file=None, api_token=None,
                 extra_args=(), fast=True, log_level='debug', workdir=None, env=None):
        """state_file=False: no --state-file (a Redis store). env: EL_* variables to set."""
        self.binary = require_binary()
        self.workdir = workdir or tempfile.mkdtemp(prefix='el-service-')
        self.state_file = (None if state_file is False
                           else state_file or os.path.join(self.workdir, 'state.json'))
        self.env = dict(env or {})
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.api_token = api_token
        self.extra_args = list(extra_args)
        self.fast = fast
        self.log_level = log_level
        self.port = None
        self.proc = None
        self.log_path = os.path.join(self.workdir, 'service.log')
        self.starts = 0

    # ---- lifecycle ---------------------------------------------------------------------------
    def argv(self):
        args = [self.binary, 'serve', '--listen', f'{HOST}:{self.port}',
                '--webhook-url', self.webhook_url, '--webhook-secret', self.webhook_secret,
                '--log-level', self.log_level]
        if self.state_file:
            args += ['--state-file', self.state_file]
        if self.api_token:
            args += ['--api-token', self.api_token]
        if self.fast:
            args += FAST_FLAGS
        return args + self.extra_args

    def start(self, timeout=20):
        if self.proc is not None:
            raise RuntimeError('service already running')
        fresh_port = self.port is None
        env = {k: v for k, v in os.environ.items() if not k.startswith('EL_')}
        env.update(self.env)
        for attempt in range(4):
            if fresh_port:
                self.port = free_port()
            log = open(self.log_path, 'ab')
            self.starts += 1
            shown = ' '.join('***' if prev in ('--webhook-secret', '--api-token', '--store',
                                               '--queue', '--sink') else a
                             for prev, a in zip([''] + self.argv(), self.argv()))
            log.write(f'\n===== start #{self.starts}: {shown}\n'.encode())
            log.flush()
            offset = log.tell()
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if self.request('GET', '/healthz', token=None, timeout=2).status == 200:
                        return self
                except (OSError, http.client.HTTPException):
                    pass  # not listening yet, or another process owns the port (then it exits)
                time.sleep(0.05)
            rc = self.proc.poll()
            tail = self.log_since(offset)
            self._kill()
            if rc is not None and fresh_port and 'in use' in tail.lower() and attempt < 3:
                time.sleep(0.3)
                continue
            raise RuntimeError(f'email-listener did not become healthy within {timeout}s '
                               f'(exit status {rc}); its output:\n{tail[-4000:]}')
        raise RuntimeError('email-listener did not start')

    def stop(self, timeout=15):
        """SIGTERM and wait for a clean exit; returns the exit status (SIGKILL after timeout)."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            rc = 'killed after SIGTERM timeout'
        self.proc = None
        return rc

    def kill(self):
        """SIGKILL: a crash, nothing gets flushed."""
        self._kill()

    def pause(self):
        """SIGSTOP: the process freezes (a long GC pause, a partition), its timers stop."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def _kill(self):
        if self.proc is None:
            return
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None

    def restart(self, kill=False, pause=0.0):
        self.kill() if kill else self.stop()
        if pause:
            time.sleep(pause)
        return self.start()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self, keep=None):
        self._kill()
        keep = keep if keep is not None else bool(os.environ.get('ELTEST_KEEP'))
        if not keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()

    # ---- logs --------------------------------------------------------------------------------
    def log_text(self):
        return self.log_since(0)

    def log_since(self, offset):
        try:
            with open(self.log_path, 'rb') as f:
                f.seek(offset)
                return f.read().decode('utf-8', errors='replace')
        except OSError:
            return ''

    # ---- HTTP API ----------------------------------------------------------------------------
    @property
    def base_url(self):
        return f'http://{HOST}:{self.port}'

    def request(self, method, path, body=None, token='default', headers=None, raw=None,
                timeout=10):
        """One HTTP call. body: JSON-encoded; raw: bytes sent as is. token: 'default' uses the
        service's --api-token, None sends no Authorization header, anything else is sent."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header('Content-Type', 'application/json')
        tok = self.api_token if token == 'default' else token
        if tok:
            req.add_header('Authorization', f'Bearer {tok}')
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
        try:
            with opener.open(req, timeout=timeout) as r:
                return Response(r.status, r.read(), {k.lower(): v for k, v in r.headers.items()})
        except urllib.error.HTTPError as e:
            body = e.read() if e.fp is not None else b''
            return Response(e.code, body, {k.lower(): v for k, v in (e.headers or {}).items()})

    def add_mailbox(self, payload, expect=201):
        r = self.request('POST', '/v1/mailboxes', payload)
        if expect is not None and r.status != expect:
            raise ApiError(f'POST /v1/mailboxes answered {r.status}, expected {expect}: {r.text}')
        return r.json

    def get_mailbox(self, mailbox_id):
        r = self.request('GET', f'/v1/mailboxes/{mailbox_id}')
        if r.status != 200:
            raise ApiError(f'GET /v1/mailboxes/{mailbox_id} answered {r.status}: {r.text}')
        return r.json

    def delete_mailbox(self, mailbox_id):
        return self.request('DELETE', f'/v1/mailboxes/{mailbox_id}')

    def metrics(self):
        return self.request('GET', '/metrics')

    def wait_state(self, mailbox_id, states, timeout=20):
        """Waits until the mailbox's state is one of states; returns the status object."""
        if isinstance(states, str):
            states = (states,)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.get_mailbox(mailbox_id)
                if last.get('state') in states:
                    return last
            except (OSError, ApiError) as exc:
                last = repr(exc)
            if self.proc is not None and self.proc.poll() is not None:
                raise ApiError(f'service exited with {self.proc.returncode} while waiting for '
                               f'{mailbox_id} to be {states}')
            time.sleep(0.1)
        raise TimeoutError(f'mailbox {mailbox_id} not in {states} after {timeout}s; last status: {last}')


def imap_settings(dovecot, user, security='tls', ca=True, password=None, host='127.0.0.1',
                  insecure=None):
    """The "imap" object of a registration for a user of a harness Dovecot."""
    port = dovecot.imaps_port if security == 'tls' else dovecot.imap_port
    imap = {'host': host, 'port': port, 'security': security, 'username': user,
            'password': dovecot.password(user) if password is None else password}
    if ca and security != 'none':
        imap['tls_ca_file'] = dovecot.ca_path
    if insecure is not None:
        imap['tls_insecure'] = insecure
    return imap


def mailbox_payload(dovecot, user, mailbox_id=None, **kw):
    since = kw.pop('since', None)
    folders = kw.pop('folders', None)
    webhook = kw.pop('webhook', None)
    body = {'email': dovecot.address(user), 'imap': imap_settings(dovecot, user, **kw)}
    if mailbox_id:
        body['id'] = mailbox_id
    if since:
        body['since'] = since
    if folders:
        body['folders'] = folders
    if webhook:
        body['webhook'] = webhook
    return body
