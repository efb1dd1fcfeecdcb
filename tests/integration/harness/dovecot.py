"""A private Dovecot 2.3 on free loopback ports, in a temporary directory, for integration tests.

It never reads or changes the system's /etc/dovecot or its running service: everything (config,
sockets, state, logs, mail, TLS files) lives under one temp dir. Listeners, all on 127.0.0.1:
plain IMAP (STARTTLS-capable), IMAPS (implicit TLS, certificate for localhost/127.0.0.1 signed by
a test CA made with the openssl CLI at start), LMTP on TCP (injection). Users live in a
passwd-file (user1..userN, password "password<N>"), mail in maildirs owned by the `vmail` user.
An auth-client socket (`auth_socket_path`, mode 0666) lets a private Postfix authenticate SMTP
clients through this Dovecot (harness/postfix.py). Opt-in: `oauth2=` (an OAuthServer or an
introspection URL) adds the XOAUTH2/OAUTHBEARER mechanisms, checked by an oauth2 passdb against
that introspection endpoint (harness/oauth_server.py).

Standard library only; run with /usr/bin/python3. Every wait is bounded.
"""

import grp
import imaplib
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import uuid

from harness.ports import free_port

DOVECOT_BIN = '/usr/sbin/dovecot'
DOVEADM_BIN = '/usr/bin/doveadm'
OPENSSL_BIN = shutil.which('openssl') or '/usr/bin/openssl'
MAIL_USER = 'vmail'      # owns the maildirs; Dovecot refuses to run mail processes as root
LOGIN_USER = 'dovenull'  # created by the dovecot-core package
INTERNAL_USER = 'dovecot'
HOST = '127.0.0.1'


class HarnessError(RuntimeError):
    pass




def wait_until(predicate, timeout, interval=0.05, what='condition'):
    """Polls predicate() until it returns a true value (which is returned); raises on timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # pylint: disable=broad-except
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f' (last error: {last_exc!r})' if last_exc else ''
            raise TimeoutError(f'timed out after {timeout}s waiting for {what}{detail}')
        time.sleep(interval)


def ensure_mail_user():
    """Returns (uid, gid) of the vmail user, creating it (idempotently) when we are root."""
    try:
        pw = pwd.getpwnam(MAIL_USER)
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise HarnessError(f'user {MAIL_USER!r} is missing; run scripts/install-test-deps.sh as root')
    try:
        grp.getgrnam(MAIL_USER)
    except KeyError:
        subprocess.run(['groupadd', '--system', MAIL_USER], check=False, capture_output=True,
                       timeout=30)
    subprocess.run(['useradd', '--system', '--gid', MAIL_USER, '--no-create-home',
                    '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', MAIL_USER],
                   check=False, capture_output=True, timeout=30)
    pw = pwd.getpwnam(MAIL_USER)
    return pw.pw_uid, pw.pw_gid


def raise_inotify_limits(instances=4096, watches=65536):
    """Best effort: each IDLE session holds an inotify instance of the mail user, and the kernel
    default (128) silently degrades IDLE to mailbox_idle_check_interval polling past that."""
    for name, want in (('max_user_instances', instances), ('max_user_watches', watches)):
        path = f'/proc/sys/fs/inotify/{name}'
        try:
            with open(path, encoding='ascii') as f:
                if int(f.read().strip()) >= want:
                    continue
            with open(path, 'w', encoding='ascii') as f:
                f.write(str(want))
        except (OSError, ValueError):
            pass


def make_test_ca(directory, names=('localhost',), ips=('127.0.0.1',)):
    """Creates ca.pem/ca.key and server.pem/server.key (signed by the CA) with the openssl CLI.
    Returns (ca_path, cert_path, key_path)."""
    os.makedirs(directory, exist_ok=True)
    p = lambda name: os.path.join(directory, name)  # noqa: E731

    def run(*args):
        r = subprocess.run([OPENSSL_BIN, *args], capture_output=True, timeout=60, check=False)
        if r.returncode != 0:
            raise HarnessError(f'openssl {" ".join(args)} failed: {r.stderr.decode(errors="replace")}')

    ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
    run('req', '-x509', *ec, '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '3',
        '-subj', f'/CN=email-listener test CA {uuid.uuid4().hex[:8]}',
        '-addext', 'basicConstraints=critical,CA:TRUE',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
    run('req', *ec, '-keyout', p('server.key'), '-out', p('server.csr'), '-subj', '/CN=localhost')
    san = ','.join([f'DNS:{n}' for n in names] + [f'IP:{i}' for i in ips])
    with open(p('server.ext'), 'w', encoding='ascii') as f:
        f.write(f'subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n'
                'keyUsage=critical,digitalSignature,keyEncipherment\n'
                'extendedKeyUsage=serverAuth\n')
    run('x509', '-req', '-in', p('server.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'),
        '-CAcreateserial', '-out', p('server.pem'), '-days', '3', '-extfile', p('server.ext'))
    os.chmod(p('server.key'), 0o600)
    return p('ca.pem'), p('server.pem'), p('server.key')


CONFIG_TEMPLATE = """\
# Private Dovecot for email-listener integration tests (generated; do not edit).
protocols = imap lmtp
listen = {host}
base_dir = {root}/run
state_dir = {root}/state
instance_name = el-test-{tag}
log_path = {log}
info_log_path = {log}
debug_log_path = {log}
log_timestamp = "%Y-%m-%d %H:%M:%S.%{{usecs}} "
auth_verbose = yes
auth_mechanisms = {auth_mechanisms}
disable_plaintext_auth = no
auth_username_format = %Ln
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_user}
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
  mailbox Trash {{
    special_use = \\Trash
  }}
  mailbox Drafts {{
    special_use = \\Drafts
  }}
}}
mailbox_idle_check_interval = {idle_check}
imap_hibernate_timeout = {hibernate}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {users}{passwd_mechanisms}
}}
{oauth2_passdb}userdb {{
  driver = passwd-file
  args = {users}
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {host}
    port = {lmtp_port}
  }}
}}
service imap-hibernate {{
  unix_listener imap-hibernate {{
    mode = 0666
  }}
}}
service imap {{
  unix_listener imap-master {{
    user = {internal_user}
  }}
}}
service auth {{
  unix_listener {auth_socket_name} {{
    mode = 0666
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
{extra}
"""


AUTH_SOCKET_NAME = 'auth-client-el'  # below base_dir (<root>/run), for Postfix's dovecot SASL

OAUTH2_PASSDB = """passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {args}
}}
"""

# Dovecot 2.3.19's oauth2 passdb (doc/wiki/PasswordDatabase.oauth2.txt): no tokeninfo_url, so
# every login is one RFC 7662 introspection POST (form token=...); the answer's `username` must
# equal the login name and `active` must be true. auth_cache_size stays 0 (Dovecot's default):
# nothing is cached, an expired or revoked token fails at the next login.
OAUTH2_ARGS = """introspection_url = {url}
introspection_mode = post
force_introspection = yes
username_attribute = username
username_format = %Ln
active_attribute = active
active_value = true
timeout_msecs = 5000
"""


class Dovecot:
    """One private Dovecot. Use as a context manager or call start()/stop().

    hibernate_timeout: Dovecot's imap_hibernate_timeout ('0' disables; e.g. '5s').
    idle_check_interval: mailbox_idle_check_interval, the fallback when inotify says nothing.
    oauth2: None (default: PLAIN/LOGIN only), or an OAuthServer (harness/oauth_server.py) or its
    introspection URL: adds XOAUTH2 and OAUTHBEARER, verified by an oauth2 passdb (passwords
    still work for PLAIN/LOGIN, tokens only for the OAuth mechanisms).
    oauth2_debug: `debug = yes` in the oauth2 passdb (HTTP exchanges in the log).
    """

    def __init__(self, users=3, hibernate_timeout='0', idle_check_interval='1s',
                 extra_config='', keep_dir=None, auth_penalty=True, auth_failure_delay=None,
                 oauth2=None, oauth2_debug=False):
        self.uid, self.gid = ensure_mail_user()
        raise_inotify_limits()
        self.root = tempfile.mkdtemp(prefix='el-dovecot-')
        os.chmod(self.root, 0o755)  # login processes (dovenull) chroot below base_dir
        self.tag = os.path.basename(self.root).split('-')[-1]
        self.conf_path = os.path.join(self.root, 'dovecot.conf')
        self.log_path = os.path.join(self.root, 'dovecot.log')
        self.users_path = os.path.join(self.root, 'users')
        self.mail_root = os.path.join(self.root, 'mail')
        self.auth_socket_path = os.path.join(self.root, 'run', AUTH_SOCKET_NAME)
        self.oauth2_url = getattr(oauth2, 'introspect_url', oauth2)
        self.oauth2_debug = oauth2_debug
        self.oauth2_args_path = os.path.join(self.root, 'dovecot-oauth2.conf.ext')
        self.hibernate_timeout = hibernate_timeout
        self.idle_check_interval = idle_check_interval
        # auth_penalty=False: Dovecot's per-IP penalty (anvil, 2 s doubling up to 15 s per failed
        # login from 127.0.0.1) would itself throttle a client that retries in a tight loop and
        # hide it; without it, failed_logins() counts what the client really attempted.
        extra = []
        if not auth_penalty:
            extra.append('service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}')
        if auth_failure_delay is not None:
            extra.append(f'auth_failure_delay = {auth_failure_delay}')
        self.extra_config = '\n'.join(extra + [extra_config])
        self.keep_dir = keep_dir if keep_dir is not None else bool(os.environ.get('ELTEST_KEEP'))
        self.proc = None
        self.imap_port = self.imaps_port = self.lmtp_port = None
        self.passwords = {}
        for d in ('run', 'state', 'tls'):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        os.makedirs(self.mail_root, mode=0o755, exist_ok=True)
        self.ca_path, self.cert_path, self.key_path = make_test_ca(os.path.join(self.root, 'tls'))
        open(self.users_path, 'a', encoding='utf-8').close()
        os.chmod(self.users_path, 0o644)
        for i in range(1, users + 1):
            self.add_user(f'user{i}', f'password{i}')

    # ---- users -------------------------------------------------------------------------------
    def add_user(self, name, password):
        """Adds a passwd-file user (Dovecot re-reads the file when it changes) with a maildir home."""
        if ':' in name or ':' in password or '\n' in name + password:
            raise ValueError('user names and passwords may not contain ":" or newlines')
        home = self.home(name)
        os.makedirs(home, mode=0o700, exist_ok=True)
        os.chown(home, self.uid, self.gid)
        with open(self.users_path, 'a', encoding='utf-8') as f:
            f.write(f'{name}:{{PLAIN}}{password}:{self.uid}:{self.gid}::{home}::\n')
        self.passwords[name] = password
        return name

    def home(self, user):
        return os.path.join(self.mail_root, user)

    def password(self, user):
        return self.passwords[user]

    def address(self, user):
        return f'{user}@localhost'

    # ---- lifecycle ---------------------------------------------------------------------------
    @property
    def auth_mechanisms(self):
        return ['plain', 'login'] + (['xoauth2', 'oauthbearer'] if self.oauth2_url else [])

    def _write_config(self):
        oauth2_passdb = passwd_mechanisms = ''
        if self.oauth2_url:
            with open(self.oauth2_args_path, 'w', encoding='utf-8') as f:
                f.write(OAUTH2_ARGS.format(url=self.oauth2_url)
                        + ('debug = yes\n' if self.oauth2_debug else ''))
            os.chmod(self.oauth2_args_path, 0o644)
            oauth2_passdb = OAUTH2_PASSDB.format(args=self.oauth2_args_path)
            passwd_mechanisms = '\n  mechanisms = plain login'
        text = CONFIG_TEMPLATE.format(
            auth_mechanisms=' '.join(self.auth_mechanisms), passwd_mechanisms=passwd_mechanisms,
            oauth2_passdb=oauth2_passdb, auth_socket_name=AUTH_SOCKET_NAME,
            host=HOST, root=self.root, tag=self.tag, log=self.log_path, users=self.users_path,
            login_user=LOGIN_USER, internal_user=INTERNAL_USER, uid=self.uid, gid=self.gid,
            idle_check=self.idle_check_interval, hibernate=self.hibernate_timeout,
            cert=self.cert_path, key=self.key_path, imap_port=self.imap_port,
            imaps_port=self.imaps_port, lmtp_port=self.lmtp_port, extra=self.extra_config)
        with open(self.conf_path, 'w', encoding='utf-8') as f:
            f.write(text)

    def _listening(self):
        for port, greeting in ((self.imap_port, b'* OK'), (self.imaps_port, None),
                               (self.lmtp_port, b'220')):
            with socket.create_connection((HOST, port), timeout=2) as s:
                if greeting is not None:
                    s.settimeout(2)
                    if not s.recv(64).startswith(greeting):
                        return False
        return True

    def start(self, timeout=20):
        """Starts Dovecot (same ports as before on a restart) and waits until all listeners answer."""
        if self.proc is not None:
            raise HarnessError('dovecot already running')
        fresh_ports = self.imap_port is None
        for attempt in range(5):
            if fresh_ports:
                self.imap_port, self.imaps_port, self.lmtp_port = free_port(), free_port(), free_port()
                if len({self.imap_port, self.imaps_port, self.lmtp_port}) < 3:
                    continue
            self._write_config()
            log_offset = self._log_size()
            with open(os.path.join(self.root, 'master.out'), 'ab') as out:
                self.proc = subprocess.Popen([DOVECOT_BIN, '-F', '-c', self.conf_path],
                                             stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if self._listening():
                        return self
                except OSError:
                    pass
                time.sleep(0.05)
            out = self._read_tail(log_offset) + self._master_out()
            self._kill_group()
            self.proc = None
            if 'Address already in use' in out and attempt < 4:
                time.sleep(0.5)  # restart: a port may linger; first start: pick new ones
                continue
            raise HarnessError(f'dovecot did not start (root {self.root}):\n{out[-4000:]}')
        raise HarnessError('dovecot did not start: no free ports')

    def stop(self, timeout=10):
        """SIGTERM to the master (it disconnects IMAP clients with BYE), then makes sure no child
        process of this instance is left."""
        if self.proc is None:
            return
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self._kill_group()
        self.proc = None

    def restart(self, pause=0.0):
        self.stop()
        if pause:
            time.sleep(pause)
        return self.start()

    def _kill_group(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

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

    # ---- logs --------------------------------------------------------------------------------
    def _log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def _read_tail(self, offset=0):
        try:
            with open(self.log_path, 'rb') as f:
                f.seek(offset)
                return f.read().decode('utf-8', errors='replace')
        except OSError:
            return ''

    def _master_out(self):
        try:
            with open(os.path.join(self.root, 'master.out'), 'rb') as f:
                return f.read().decode('utf-8', errors='replace')
        except OSError:
            return ''

    def log_text(self):
        return self._read_tail(0)

    def log_mark(self):
        """An offset for log_since()/failed_logins(since=...)."""
        return self._log_size()

    def log_since(self, mark):
        return self._read_tail(mark)

    def failed_logins(self, user, since=0):
        """Password checks that failed for user, as logged by the auth process (auth_verbose)."""
        pattern = re.compile(r'auth: Info: passwd-file\(' + re.escape(user) + r'[,)].*Password mismatch')
        return sum(1 for line in self.log_since(since).splitlines() if pattern.search(line))

    def failed_login_times(self, user, since=0):
        """Timestamps (seconds since the epoch, from the log) of failed password checks."""
        pattern = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) auth: Info: passwd-file\('
                             + re.escape(user) + r'[,)].*Password mismatch')
        out = []
        for line in self.log_since(since).splitlines():
            m = pattern.search(line)
            if m:
                out.append(time.mktime(time.strptime(m.group(1)[:19], '%Y-%m-%d %H:%M:%S'))
                           + float('0' + m.group(1)[19:]))
        return out

    def successful_logins(self, user, since=0):
        pattern = re.compile(r'imap-login: Info: Login: user=<' + re.escape(user) + r'>')
        return sum(1 for line in self.log_since(since).splitlines() if pattern.search(line))

    # ---- mail in -----------------------------------------------------------------------------
    def inject(self, user, msg_bytes, mail_from='sender@example.test', timeout=15):
        """Delivers one message to user's INBOX over LMTP; returns once LMTP accepted it."""
        if isinstance(msg_bytes, str):
            msg_bytes = msg_bytes.encode('utf-8')
        with smtplib.LMTP(HOST, self.lmtp_port, timeout=timeout) as lmtp:
            refused = lmtp.sendmail(mail_from, [self.address(user)], msg_bytes)
            if refused:
                raise HarnessError(f'LMTP refused {user}: {refused}')

    def inject_offline(self, user, msg_bytes, folder_dir='Maildir'):
        """Drops a message straight into the user's maildir new/ (works while Dovecot is stopped;
        Dovecot assigns its UID at the next sync)."""
        if isinstance(msg_bytes, str):
            msg_bytes = msg_bytes.encode('utf-8')
        base = os.path.join(self.home(user), folder_dir)
        for sub in ('', 'cur', 'new', 'tmp'):
            d = os.path.join(base, sub)
            if not os.path.isdir(d):
                os.makedirs(d, mode=0o700, exist_ok=True)
                os.chown(d, self.uid, self.gid)
        name = f'{time.time():.6f}.{uuid.uuid4().hex}.el-test'
        tmp = os.path.join(base, 'tmp', name)
        with open(tmp, 'wb') as f:
            f.write(msg_bytes.replace(b'\r\n', b'\n'))
        os.chown(tmp, self.uid, self.gid)
        os.rename(tmp, os.path.join(base, 'new', name))

    # ---- IMAP checks -------------------------------------------------------------------------
    def client_tls_context(self, ca=True):
        ctx = ssl.create_default_context(cafile=self.ca_path if ca else None)
        return ctx

    def imap(self, user, security='tls', host='localhost', password=None, timeout=15,
             token=None):
        """A logged-in imaplib client. security: 'tls' (IMAPS), 'starttls' or 'none' (plain).
        token: log in with AUTHENTICATE XOAUTH2 and this access token instead of a password."""
        if password is None and token is None:
            password = self.passwords[user]
        if security == 'tls':
            c = imaplib.IMAP4_SSL(host, self.imaps_port, ssl_context=self.client_tls_context(),
                                  timeout=timeout)
        else:
            c = imaplib.IMAP4(host, self.imap_port, timeout=timeout)
            if security == 'starttls':
                try:
                    c.starttls(ssl_context=self.client_tls_context())
                except BaseException:
                    c.shutdown()
                    raise
        try:
            if token is not None:
                c.authenticate('XOAUTH2', xoauth2_responder(user, token))
            else:
                c.login(user, password)
        except BaseException:
            c.shutdown()
            raise
        return c

    def _with_inbox(self, user, fn, folder='INBOX'):
        c = self.imap(user, security='none', host=HOST)
        try:
            typ, _ = c.select(folder, readonly=True)
            if typ != 'OK':
                raise HarnessError(f'SELECT {folder} failed for {user}')
            return fn(c)
        finally:
            try:
                c.logout()
            except (OSError, imaplib.IMAP4.error):
                pass

    def flags(self, user, folder='INBOX'):
        """{uid: set of flags} of every message in the folder (read-only: changes nothing)."""
        def fetch(c):
            typ, data = c.uid('FETCH', '1:*', '(UID FLAGS)')
            out = {}
            for item in data or []:
                if not item:
                    continue
                text = item.decode() if isinstance(item, bytes) else item[0].decode()
                m = re.search(r'UID (\d+)', text)
                f = re.search(r'FLAGS \(([^)]*)\)', text)
                if m:
                    out[int(m.group(1))] = set(f.group(1).split()) if f else set()
            return out
        return self._with_inbox(user, fetch, folder)

    def uids(self, user, folder='INBOX'):
        return sorted(self.flags(user, folder))

    def unseen_uids(self, user, folder='INBOX'):
        return sorted(uid for uid, fl in self.flags(user, folder).items() if '\\Seen' not in fl)

    def message_count(self, user, folder='INBOX'):
        return len(self.flags(user, folder))

    def uidvalidity(self, user, folder='INBOX'):
        c = self.imap(user, security='none', host=HOST)
        try:
            typ, data = c.status(folder, '(UIDVALIDITY UIDNEXT)')
            m = re.search(rb'UIDVALIDITY (\d+)', data[0])
            return int(m.group(1))
        finally:
            c.logout()

    def processes(self):
        """Process titles of this instance (e.g. '.../imap', '.../imap-hibernate')."""
        if not self.running:
            return []
        r = subprocess.run(['pgrep', '-a', '-s', str(self.proc.pid)], capture_output=True,
                           text=True, timeout=10, check=False)
        return [line.split(' ', 1)[1] for line in r.stdout.splitlines() if ' ' in line]

    def hibernated(self):
        """True when an imap-hibernate process holds sessions right now."""
        return any(p.endswith('/imap-hibernate') for p in self.processes())

    def idle_watcher(self, user, folder='INBOX'):
        return IdleWatcher(self, user, folder)

    def describe(self):
        return (f'dovecot root={self.root} imap={self.imap_port} imaps={self.imaps_port} '
                f'lmtp={self.lmtp_port} ca={self.ca_path}'
                + (f' oauth2={self.oauth2_url}' if self.oauth2_url else ''))


class IdleWatcher:
    """A bare IMAP IDLE client (raw commands on imaplib's socket): measures the server's own
    notification latency, the floor under any listener's."""

    def __init__(self, server, user, folder='INBOX'):
        self.c = server.imap(user, security='none', host=HOST)
        self.c.select(folder)
        self.tag = None

    def start(self):
        self.tag = self.c._new_tag().decode()  # pylint: disable=protected-access
        self.c.send(f'{self.tag} IDLE\r\n'.encode())
        line = self.c.readline()
        if not line.startswith(b'+'):
            raise HarnessError(f'IDLE refused: {line!r}')

    def wait_exists(self, timeout=10):
        """Blocks until an untagged EXISTS arrives; returns (count, monotonic time) or None."""
        deadline = time.monotonic() + timeout
        sock = self.c.socket()
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                line = self.c.readline()
            except (socket.timeout, TimeoutError):
                return None
            if not line:
                raise HarnessError('server closed the IDLE connection')
            m = re.match(rb'\* (\d+) EXISTS', line)
            if m:
                return int(m.group(1)), time.monotonic()
        return None

    def done(self, timeout=10):
        self.c.socket().settimeout(timeout)
        self.c.send(b'DONE\r\n')
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.c.readline()
            if not line:
                raise HarnessError('connection closed before IDLE completed')
            if line.startswith(self.tag.encode() + b' '):
                return line
        raise TimeoutError('no tagged answer to DONE')

    def close(self):
        try:
            self.c.logout()
        except (OSError, imaplib.IMAP4.error):
            pass


def xoauth2_responder(user, token):
    """An imaplib/smtplib authobject for XOAUTH2: the initial response, then an empty line to
    the server's JSON error challenge (so a refused token ends in NO / 535, not a hang)."""
    state = {'sent': False}

    def respond(challenge=None):  # imaplib passes the decoded challenge, smtplib None first
        if state['sent']:
            return ''
        state['sent'] = True
        return f'user={user}\x01auth=Bearer {token}\x01\x01'  # str: smtplib encodes it
    return respond


def make_message(subject, body='Hello from the integration tests.\n', from_addr='Alice Sender <alice@example.test>',
                 to_addr='user1@localhost', message_id=None, extra_headers=None):
    """A small RFC 5322 message as bytes (CRLF line ends)."""
    message_id = message_id or f'<{uuid.uuid4().hex}@example.test>'
    headers = [
        f'From: {from_addr}',
        f'To: {to_addr}',
        f'Subject: {subject}',
        f'Message-ID: {message_id}',
        f'Date: {time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())}',
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=utf-8',
        'Content-Transfer-Encoding: 8bit',
    ] + list(extra_headers or [])
    return ('\r\n'.join(headers) + '\r\n\r\n' + body.replace('\n', '\r\n')).encode('utf-8')
