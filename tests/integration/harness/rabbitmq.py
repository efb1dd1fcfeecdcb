"""A private RabbitMQ 3.x node on free loopback ports, in a temp directory, for integration tests.

It never uses the system service, /etc/rabbitmq, /var/lib/rabbitmq or the default ports 5672/25672:
it runs the node's own scripts from /usr/lib/rabbitmq/bin (not /usr/sbin's wrappers, which switch
to the rabbitmq user) with this environment, everything under one temp dir:

  HOME                          the temp dir: the Erlang cookie (.erlang.cookie) is created there,
                                and rabbitmqctl finds it the same way
  RABBITMQ_NODENAME             el-test-<tag>@localhost (kept across restart(): the data dir is
                                named after it)
  RABBITMQ_NODE_IP_ADDRESS      127.0.0.1
  RABBITMQ_NODE_PORT            the AMQP port (picked once, kept across restart())
  RABBITMQ_DIST_PORT            the Erlang distribution port (ditto)
  ERL_EPMD_PORT, ERL_EPMD_ADDRESS
                                a private epmd on 127.0.0.1, started first in the node's process
                                group (the node would otherwise start a daemon epmd that outlives
                                it)
  RABBITMQ_MNESIA_BASE, RABBITMQ_LOG_BASE, RABBITMQ_PID_FILE, RABBITMQ_PLUGINS_EXPAND_DIR
                                under the temp dir (durable queues and persistent messages live in
                                mnesia/ and survive restart())
  RABBITMQ_CONFIG_FILE, RABBITMQ_ADVANCED_CONFIG_FILE, RABBITMQ_CONF_ENV_FILE
                                paths under the temp dir that do not exist: built-in defaults
  RABBITMQ_ENABLED_PLUGINS_FILE "[]." : no plugins, a faster start
  RABBITMQ_CTL_DIST_PORT_MIN/MAX
                                0: rabbitmqctl's own distribution listener takes any free port
                                instead of the fixed 35672-35682
Inherited RABBITMQ_* and ERL_* variables are dropped (an ERL_AFLAGS would change the node).
The guest/guest user may log in from loopback, so url() needs no extra user.

Standard library only; run with /usr/bin/python3. Every wait is bounded. ELTEST_KEEP=1 keeps the
temp dir (logs, data) after cleanup().
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

from harness.ports import free_port

RABBITMQ_BIN_DIR = '/usr/lib/rabbitmq/bin'
SERVER_BIN = os.path.join(RABBITMQ_BIN_DIR, 'rabbitmq-server')
CTL_BIN = os.path.join(RABBITMQ_BIN_DIR, 'rabbitmqctl')
HOST = '127.0.0.1'
AMQP_HEADER = b'AMQP\x00\x00\x09\x01'


class HarnessError(RuntimeError):
    pass


def _find_epmd():
    for path in ('/usr/bin/epmd', shutil.which('epmd')):
        if path and os.access(path, os.X_OK):
            return path
    erlang = '/usr/lib/erlang'
    for name in sorted(os.listdir(erlang)) if os.path.isdir(erlang) else []:
        path = os.path.join(erlang, name, 'bin', 'epmd')
        if name.startswith('erts-') and os.access(path, os.X_OK):
            return path
    return None


def _tcp_open(port, timeout=1.0):
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _amqp_handshake(port, timeout=2.0):
    """True when the node answers the protocol header with connection.start (a method frame on
    channel 0), i.e. the AMQP listener of a booted broker is there, not just an open port."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(AMQP_HEADER)
            head = s.recv(7)
            return len(head) == 7 and head[0] == 1 and head[1:3] == b'\x00\x00'
    except OSError:
        return False


class RabbitMQServer:
    """One private RabbitMQ node. Use as a context manager or call start()/stop()/cleanup()."""

    def __init__(self, keep_dir=None):
        if not os.access(SERVER_BIN, os.X_OK) or not os.access(CTL_BIN, os.X_OK):
            raise HarnessError(f'{SERVER_BIN} not found: run scripts/install-test-deps.sh as root '
                               '(package rabbitmq-server)')
        self.epmd_bin = _find_epmd()
        if self.epmd_bin is None:
            raise HarnessError('epmd not found: run scripts/install-test-deps.sh as root')
        self.root = tempfile.mkdtemp(prefix='el-rabbitmq-')
        self.tag = os.path.basename(self.root).split('-')[-1].lower()
        self.nodename = f'el-test-{self.tag}@localhost'
        self.keep_dir = keep_dir if keep_dir is not None else bool(os.environ.get('ELTEST_KEEP'))
        self.port = self.dist_port = self.epmd_port = None
        self.proc = None   # the node (rabbitmq-server exec's into the Erlang VM)
        self.epmd = None   # leader of the node's process group
        self.startup_seconds = None
        os.makedirs(os.path.join(self.root, 'log'), exist_ok=True)
        with open(os.path.join(self.root, 'enabled_plugins'), 'w', encoding='ascii') as f:
            f.write('[].\n')

    # ---- environment ---------------------------------------------------------------------------
    def env(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(('RABBITMQ_', 'ERL_')) and k != 'HOME'}
        r = self.root
        env.update({
            'HOME': r,
            'RABBITMQ_NODENAME': self.nodename,
            'RABBITMQ_NODE_IP_ADDRESS': HOST,
            'RABBITMQ_NODE_PORT': str(self.port),
            'RABBITMQ_DIST_PORT': str(self.dist_port),
            'ERL_EPMD_PORT': str(self.epmd_port),
            'ERL_EPMD_ADDRESS': HOST,
            'RABBITMQ_MNESIA_BASE': os.path.join(r, 'mnesia'),
            'RABBITMQ_LOG_BASE': os.path.join(r, 'log'),
            'RABBITMQ_PID_FILE': os.path.join(r, 'rabbitmq.pid'),
            'RABBITMQ_PLUGINS_EXPAND_DIR': os.path.join(r, 'plugins-expand'),
            'RABBITMQ_CONFIG_FILE': os.path.join(r, 'rabbitmq'),
            'RABBITMQ_ADVANCED_CONFIG_FILE': os.path.join(r, 'advanced.config'),
            'RABBITMQ_CONF_ENV_FILE': os.path.join(r, 'rabbitmq-env.conf'),
            'RABBITMQ_ENABLED_PLUGINS_FILE': os.path.join(r, 'enabled_plugins'),
            'RABBITMQ_CTL_DIST_PORT_MIN': '0',
            'RABBITMQ_CTL_DIST_PORT_MAX': '0',
        })
        return env

    def url(self, vhost='/'):
        """amqp://guest:guest@127.0.0.1:PORT/%2f for the vhost "/" (others percent-encoded)."""
        encoded = '%2f' if vhost == '/' else urllib.parse.quote(vhost, safe='')
        return f'amqp://guest:guest@{HOST}:{self.port}/{encoded}'

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout=60):
        """Starts the node (same ports and data as before on a restart) and waits until the AMQP
        listener answers the protocol header and `rabbitmqctl await_startup` succeeds."""
        if self.running:
            raise HarnessError('rabbitmq already running')
        t0 = time.monotonic()
        fresh_ports = self.port is None
        for attempt in range(5):
            if fresh_ports:
                self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
                if len({self.port, self.dist_port, self.epmd_port}) < 3:
                    continue
            log_offset = self._size(self.out_path)
            try:
                self._spawn(timeout)
                self.startup_seconds = time.monotonic() - t0
                return self
            except HarnessError as exc:
                out = self._read(self.out_path, log_offset) + self.log_text()[-4000:]
                self._kill_group()
                if ('eaddrinuse' in out or 'Address already in use' in out) and attempt < 4:
                    time.sleep(0.5)  # restart: a port may linger; first start: pick new ones
                    continue
                raise HarnessError(f'{exc} (root {self.root}):\n{out[-6000:]}') from None
        raise HarnessError('rabbitmq did not start: no free ports')

    def _spawn(self, timeout):
        env = self.env()
        deadline = time.monotonic() + timeout
        with open(os.path.join(self.root, 'epmd.out'), 'ab') as out:
            self.epmd = subprocess.Popen(
                [self.epmd_bin, '-port', str(self.epmd_port), '-address', HOST],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                process_group=0)  # a group of its own in our session, which the node joins
        # The node looks for epmd early and starts its own daemon if ours is not there yet.
        while not _tcp_open(self.epmd_port, timeout=0.5):
            if self.epmd.poll() is not None or time.monotonic() > deadline:
                raise HarnessError('epmd did not start')
            time.sleep(0.02)
        with open(self.out_path, 'ab') as out:
            self.proc = subprocess.Popen([SERVER_BIN], stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=env, cwd=self.root,
                                         process_group=self.epmd.pid)
        while not _amqp_handshake(self.port):
            if self.proc.poll() is not None:
                raise HarnessError(f'rabbitmq-server exited with status {self.proc.returncode}')
            if time.monotonic() > deadline:
                raise HarnessError(f'rabbitmq-server did not answer AMQP within {timeout}s')
            time.sleep(0.05)
        left = max(5, int(deadline - time.monotonic()))
        try:
            self.ctl('await_startup', timeout=left)
        except HarnessError as exc:
            raise HarnessError(f'rabbitmqctl await_startup failed: {exc}') from None

    def stop(self, timeout=30):
        """Graceful: `rabbitmqctl stop` (the node syncs its queues and exits), then whatever is left
        of its process group (epmd, helpers) is killed."""
        if self.proc is None and self.epmd is None:
            return
        if self.running:
            try:
                self.ctl('stop', timeout=timeout)
            except HarnessError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self._kill_group()

    def kill(self):
        """SIGKILL to the node and its epmd, as in a crash: unacknowledged deliveries and
        connections are gone; durable queues and persistent messages are recovered on start()."""
        self._kill_group()

    def restart(self, pause=0.0, kill=False):
        """stop() (or kill()) and start() on the same ports with the same data directory."""
        if kill:
            self.kill()
        else:
            self.stop()
        if pause:
            time.sleep(pause)
        return self.start()

    def _kill_group(self):
        for p in (self.proc, self.epmd):
            if p is None:
                continue
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.kill()
            except ProcessLookupError:
                pass
        for p in (self.proc, self.epmd):
            if p is None:
                continue
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.proc = self.epmd = None

    def cleanup(self):
        self.stop()
        if not self.keep_dir:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # ---- rabbitmqctl ---------------------------------------------------------------------------
    def ctl(self, *args, timeout=60):
        """Runs `rabbitmqctl ARGS` against this node; returns stdout. Raises HarnessError on a
        non-zero exit or timeout. Example: ctl('list_queues', 'name', 'messages', 'consumers')."""
        cmd = [CTL_BIN, '-n', self.nodename, *args]
        try:
            r = subprocess.run(cmd, env=self.env(), cwd=self.root, capture_output=True,
                               timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise HarnessError(
                f'rabbitmqctl {" ".join(args)}: timed out after {timeout}s') from None
        if r.returncode != 0:
            raise HarnessError(f'rabbitmqctl {" ".join(args)}: exit {r.returncode}: '
                               f'{(r.stderr or r.stdout).decode(errors="replace")[-2000:]}')
        return r.stdout.decode(errors='replace')

    def queues(self, vhost='/'):
        """{name: {'messages': n, 'consumers': n}} from list_queues (JSON output). Quorum queues
        report counts from periodically refreshed metrics: poll with a deadline, do not expect a
        publish to show at once."""
        out = self.ctl('list_queues', '-p', vhost, '--formatter', 'json', 'name', 'messages',
                       'consumers')
        return {q['name']: {'messages': q['messages'], 'consumers': q['consumers']}
                for q in json.loads(out or '[]')}

    # ---- logs ----------------------------------------------------------------------------------
    @property
    def out_path(self):
        return os.path.join(self.root, 'server.out')

    @property
    def log_path(self):
        return os.path.join(self.root, 'log', f'{self.nodename}.log')

    def log_text(self):
        return self._read(self.log_path)

    def describe(self):
        return f'rabbitmq={HOST}:{self.port} node={self.nodename} root={self.root}'

    @staticmethod
    def _size(path):
        try:
            return os.path.getsize(path)
        except OSError:
            return 0

    @staticmethod
    def _read(path, offset=0):
        try:
            with open(path, 'rb') as f:
                f.seek(offset)
                return f.read().decode('utf-8', errors='replace')
        except OSError:
            return ''
