"""A private redis-server on a free loopback port, in a temporary directory, for integration tests.

It never touches the system's Redis service or port 6379: config, data (RDB/AOF) and log live
under one temp dir. restart() and kill() + start() keep the port and the data dir, so a service
configured with url() reconnects to the same server; with appendonly=True the data survives a
restart (fsync always, so a SIGKILL loses nothing acknowledged), without it each start is empty.

Standard library only; run with /usr/bin/python3. Every wait is bounded.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

from harness.ports import free_port

REDIS_BIN = '/usr/bin/redis-server'
REDIS_CLI = '/usr/bin/redis-cli'
HOST = '127.0.0.1'


class HarnessError(RuntimeError):
    pass


def require_redis():
    if not (os.access(REDIS_BIN, os.X_OK) and os.access(REDIS_CLI, os.X_OK)):
        raise HarnessError(f'{REDIS_BIN} or {REDIS_CLI} is missing: run scripts/install-test-deps.sh')


class RedisServer:
    """One private redis-server. Use as a context manager or call start()/stop().

    password: requirepass (the default user's password); url() then carries it.
    appendonly: persist to an AOF in the data dir (fsync always).
    workdir: where to keep data and log (default: a fresh temp dir, removed by cleanup()).
    """

    def __init__(self, password=None, appendonly=False, workdir=None, keep_dir=None):
        require_redis()
        self.password = password
        self.appendonly = appendonly
        self._own_dir = workdir is None
        self.root = workdir or tempfile.mkdtemp(prefix='el-redis-')
        os.makedirs(self.root, exist_ok=True)
        self.log_path = os.path.join(self.root, 'redis.log')
        self.keep_dir = keep_dir if keep_dir is not None else bool(os.environ.get('ELTEST_KEEP'))
        self.port = None
        self.proc = None

    # ---- lifecycle ---------------------------------------------------------------------------
    def _args(self):
        args = [REDIS_BIN, '--port', str(self.port), '--bind', HOST, '--protected-mode', 'no',
                '--daemonize', 'no', '--dir', self.root, '--logfile', self.log_path,
                '--save', '']
        if self.appendonly:
            args += ['--appendonly', 'yes', '--appendfsync', 'always']
        else:
            args += ['--appendonly', 'no']
        if self.password:
            args += ['--requirepass', self.password]
        return args

    def _ping(self):
        with socket.create_connection((HOST, self.port), timeout=1) as s:
            s.settimeout(1)
            s.sendall(b'PING\r\n')
            reply = s.recv(64)
        # +PONG, or -NOAUTH from a server with a password: either way it is serving.
        return reply.startswith(b'+PONG') or reply.startswith(b'-NOAUTH')

    def start(self, timeout=15):
        """Starts redis-server (on the same port as before after a stop/kill) and waits for PING."""
        if self.proc is not None:
            raise HarnessError('redis already running')
        fresh_port = self.port is None
        for attempt in range(5):
            if fresh_port:
                self.port = free_port()
            log_offset = self._log_size()
            self.proc = subprocess.Popen(self._args(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                         start_new_session=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if self._ping():
                        return self
                except OSError:
                    pass
                time.sleep(0.02)
            out = self._read_log(log_offset)
            self._reap(signal.SIGKILL)
            if 'Address already in use' in out and attempt < 4:
                time.sleep(0.5)  # restart: the port may linger; first start: pick another
                continue
            raise HarnessError(f'redis-server did not start (dir {self.root}):\n{out[-4000:]}')
        raise HarnessError('redis-server did not start: no free port')

    def stop(self, timeout=10):
        """SIGTERM (Redis finishes writing its AOF), then SIGKILL if it hangs."""
        self._reap(signal.SIGTERM, timeout)

    def kill(self):
        """SIGKILL: a crash. The port and data dir stay for start()/restart()."""
        self._reap(signal.SIGKILL)

    def pause(self):
        """SIGSTOP: the kernel still accepts connections, nobody answers (a hung server)."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self, pause=0.0):
        """Stops and starts again on the same port with the same data dir."""
        self.stop()
        if pause:
            time.sleep(pause)
        return self.start()

    def _reap(self, sig, timeout=10):
        if self.proc is None:
            return
        try:
            os.kill(self.proc.pid, signal.SIGCONT)  # a paused server cannot act on SIGTERM
            os.kill(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait(timeout=5)
        self.proc = None

    def cleanup(self):
        self.kill()
        if self._own_dir and not self.keep_dir:
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

    # ---- clients -----------------------------------------------------------------------------
    def url(self, db=0):
        """redis://[:password@]127.0.0.1:PORT/db, what the service's registry option takes (the
        password percent-encoded)."""
        if self.port is None:
            raise HarnessError('redis not started yet: no port')
        auth = f':{urllib.parse.quote(self.password, safe="")}@' if self.password else ''
        return f'redis://{auth}{HOST}:{self.port}/{db}'

    def cli(self, *args, db=0, timeout=10, check=True):
        """Runs redis-cli against this server and returns its stdout (without the final newline).
        Arguments are passed as they are (binary-safe only as far as argv is)."""
        cmd = [REDIS_CLI, '-h', HOST, '-p', str(self.port), '-n', str(db)]
        if self.password:
            cmd += ['-a', self.password, '--no-auth-warning']
        r = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                           timeout=timeout, check=False)
        if check and (r.returncode != 0 or r.stdout.startswith(('ERR', 'WRONGTYPE', 'NOAUTH'))):
            raise HarnessError(f'redis-cli {" ".join(str(a) for a in args)} failed: '
                               f'{(r.stdout + r.stderr).strip()}')
        return r.stdout[:-1] if r.stdout.endswith('\n') else r.stdout

    def keys(self, pattern='*', db=0):
        """Key names matching pattern (SCAN, not KEYS), sorted."""
        out = self.cli('--scan', '--pattern', pattern, db=db)
        return sorted(line for line in out.splitlines() if line)

    # ---- logs --------------------------------------------------------------------------------
    def _log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def _read_log(self, offset=0):
        try:
            with open(self.log_path, 'rb') as f:
                f.seek(offset)
                return f.read().decode('utf-8', errors='replace')
        except OSError:
            return ''

    def log_text(self):
        return self._read_log(0)

    def describe(self):
        return f'redis port={self.port} dir={self.root} appendonly={self.appendonly}'
