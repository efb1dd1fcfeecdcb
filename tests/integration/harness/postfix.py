"""A private Postfix (3.7, Debian's package) on free loopback ports, relaying into a private Dovecot.

Nothing of the system's Postfix is used or changed: config_directory, queue_directory,
data_directory and the mail log live under one temp dir, and the instance has its own
syslog_name. The harness lays out the queue directories itself (owners/modes of Postfix's
postfix-files, plus `quick-start`, which skips the ~2.5 s integrity check), writes main.cf,
master.cf and texthash maps dated a minute back (Postfix naps while a file is "hot"), then runs
`postfix -c <root>/etc start` (the master daemonizes into its own session; ~0.1 s). Stop: SIGTERM
to the master (pid from <root>/spool/pid/master.pid; it takes its process group along), then
SIGKILL to that group if anything is left. No daemon is chrooted. Changes to the tables
(set_recipient_access, sync_users) are a `postfix -c <root>/etc reload`.

Listeners, all on 127.0.0.1:
  port      smtpd with STARTTLS offered (smtpd_tls_security_level = may)
  tls_port  smtpd with implicit TLS (smtpd_tls_wrappermode = yes, "smtps")
TLS uses the Dovecot harness's certificate (localhost / 127.0.0.1, signed by its test CA:
`ca_file`). SMTP AUTH goes through Dovecot SASL (its auth-client socket `auth_socket_path`):
PLAIN LOGIN, and XOAUTH2 OAUTHBEARER when that Dovecot has oauth2 on; AUTH is offered on plain
connections too (smtpd_tls_auth_only = no).

Routing: the Dovecot users' domain (`localhost`, user1@localhost ...) is a virtual mailbox
domain delivered to Dovecot's LMTP over TCP; an address of that domain that is not a user is
refused at RCPT (550 5.1.1). Every other domain is refused at RCPT (554 5.7.1 Relay access
denied), for everyone: nothing relays outward, and default_transport is error: anyway.
recipient_access (texthash, checked first) holds per-address answers; by default
  tempfail@localhost  451 4.3.0 try later
  refused@localhost   550 5.7.1 refused by policy
require_auth=False (default): clients may send without AUTH (from 127.0.0.0/8: everything is);
require_auth=True: RCPT without AUTH is refused with 530 5.7.0 Authentication required.

Standard library only; every wait bounded.
"""

import atexit
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import weakref

from harness.dovecot import HOST, HarnessError, xoauth2_responder
from harness.ports import free_port

POSTFIX_BIN = '/usr/sbin/postfix'
POSTCONF_BIN = '/usr/sbin/postconf'
MAIL_OWNER = 'postfix'
SETGID_GROUP = 'postdrop'
DOMAIN = 'localhost'  # Dovecot.address(user) == f'{user}@localhost'

DEFAULT_RECIPIENT_ACCESS = {
    f'tempfail@{DOMAIN}': '451 4.3.0 try later',
    f'refused@{DOMAIN}': '550 5.7.1 refused by policy',
}

MAIN_CF = """\
# Private Postfix for email-listener integration tests (generated; do not edit).
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
mail_owner = {mail_owner}
setgid_group = {setgid_group}
syslog_name = {syslog_name}
maillog_file = {root}/log/maillog
maillog_file_prefixes = {root}/log
myhostname = {myhostname}
mydomain = el-test.invalid
myorigin = $myhostname
mydestination =
inet_interfaces = {host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtp_bind_address = {host}
lmtp_bind_address = {host}
biff = no
# Only the Dovecot users' domain is ours; everything else is refused at RCPT and, should
# anything get queued anyway, bounced at once: no mail leaves this machine.
local_transport = error:local delivery is disabled in tests
alias_maps =
alias_database =
local_recipient_maps =
relay_domains =
relayhost =
default_transport = error:no outbound mail in tests
relay_transport = error:no outbound mail in tests
virtual_alias_maps =
virtual_mailbox_domains = {domain}
virtual_mailbox_maps = texthash:{root}/etc/virtual_mailboxes
virtual_transport = lmtp:inet:{host}:{lmtp_port}
lmtp_tls_security_level = none
smtp_tls_security_level = none
# Fast: no flow control, no DNS, no penalties for the errors the tests provoke.
in_flow_delay = 0
smtpd_peername_lookup = no
smtp_host_lookup = native
lmtp_host_lookup = native
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 2000
smtpd_client_connection_rate_limit = 0
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 10s
maximal_queue_lifetime = 1h
bounce_queue_lifetime = 1h
delay_warning_time = 0
message_size_limit = {message_size_limit}
mailbox_size_limit = 0
smtpd_banner = $myhostname ESMTP el-test
# TLS: the Dovecot harness's certificate (test CA).
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
smtpd_tls_session_cache_database =
tls_random_source = dev:/dev/urandom
# SMTP AUTH through the private Dovecot, on plain connections too.
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {sasl_path}
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous
smtpd_tls_auth_only = no
smtpd_sasl_authenticated_header = yes
smtpd_relay_restrictions = {relay_restrictions}
smtpd_recipient_restrictions = check_recipient_access texthash:{root}/etc/recipient_access
{extra}
"""

# No chroot anywhere (the sockets and files live under the temp dir, outside any jail).
MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
{host}:{port} inet n - n - - smtpd
{host}:{tls_port} inet n - n - - smtpd
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
  -o syslog_name={syslog_name}/smtps
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_version():
    """Postfix's mail_version (e.g. '3.7.11'), or None when Postfix is not installed."""
    try:
        r = subprocess.run([POSTCONF_BIN, '-d', '-h', 'mail_version'], capture_output=True,
                           text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


_live = weakref.WeakSet()  # started instances: stopped at interpreter exit if a test forgot


@atexit.register
def _stop_all():
    for pf in list(_live):
        try:
            pf.stop(timeout=3)
        except Exception:  # pylint: disable=broad-except
            pass


def _write_cold(path, text):
    """Writes a config or texthash file dated a minute back: Postfix re-reads a file whose
    mtime is within the last second ("hot", 300 ms naps) until it cools down, which made every
    start after a fresh config ~2 s slower."""
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)
    past = time.time() - 60
    os.utime(path, (past, past))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is as good as gone
        with open(f'/proc/{pid}/stat', encoding='ascii') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return True


class Postfix:
    """One private Postfix relaying into `dovecot` (a harness.dovecot.Dovecot, started or not:
    only its paths and LMTP port are used, the port when start() runs).

    message_size_limit: bytes (SIZE in EHLO; larger mail refused with 552 5.3.4).
    require_auth: refuse RCPT from clients that did not AUTH (530 5.7.0).
    recipient_access: {address: 'NNN X.Y.Z text'} merged over DEFAULT_RECIPIENT_ACCESS.
    extra_config: more main.cf lines.
    """

    def __init__(self, dovecot, message_size_limit=10 * 1024 * 1024, require_auth=False,
                 recipient_access=None, extra_config='', keep_dir=None):
        self.dovecot = dovecot
        self.message_size_limit = int(message_size_limit)
        self.require_auth = require_auth
        self.recipient_access = dict(DEFAULT_RECIPIENT_ACCESS)
        self.recipient_access.update(recipient_access or {})
        self.extra_config = extra_config
        self.keep_dir = keep_dir if keep_dir is not None else bool(os.environ.get('ELTEST_KEEP'))
        self.host = HOST
        self.port = self.tls_port = None
        self.master_pid = None
        self.root = tempfile.mkdtemp(prefix='el-postfix-')
        os.chmod(self.root, 0o755)  # the postfix user walks into spool/ and data/
        self.tag = os.path.basename(self.root).split('-')[-1]
        self.syslog_name = f'postfix-el-{self.tag}'
        self.conf_dir = os.path.join(self.root, 'etc')
        self.queue_dir = os.path.join(self.root, 'spool')
        self.data_dir = os.path.join(self.root, 'data')
        self.log_path = os.path.join(self.root, 'log', 'maillog')
        for d in (self.conf_dir, self.queue_dir, os.path.dirname(self.log_path)):
            os.makedirs(d, mode=0o755, exist_ok=True)
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        try:
            import pwd  # pylint: disable=import-outside-toplevel
            pw = pwd.getpwnam(MAIL_OWNER)
            os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
        except KeyError as exc:
            shutil.rmtree(self.root, ignore_errors=True)
            raise HarnessError(f'user {MAIL_OWNER!r} missing: run scripts/install-test-deps.sh '
                               '(package postfix)') from exc

    # ---- paths and facts ---------------------------------------------------------------------
    @property
    def ca_file(self):
        return self.dovecot.ca_path

    @property
    def cert_file(self):
        return self.dovecot.cert_path

    @property
    def myhostname(self):
        return f'postfix-{self.tag}.el-test.invalid'

    def address(self, user):
        return self.dovecot.address(user)

    def describe(self):
        return (f'postfix root={self.root} smtp={self.port} smtps={self.tls_port} '
                f'lmtp->{self.dovecot.lmtp_port} log={self.log_path}')

    # ---- config ------------------------------------------------------------------------------
    def _relay_restrictions(self):
        r = 'reject_unauth_destination'
        if self.require_auth:
            r += (', permit_sasl_authenticated,'
                  ' check_client_access static:{530 5.7.0 Authentication required}')
        return r

    def _write_maps(self):
        _write_cold(os.path.join(self.conf_dir, 'virtual_mailboxes'),
                    ''.join(f'{self.dovecot.address(u)} {u}\n' for u in sorted(self.dovecot.passwords)))
        _write_cold(os.path.join(self.conf_dir, 'recipient_access'),
                    ''.join(f'{a} {v}\n' for a, v in sorted(self.recipient_access.items())))

    def _write_config(self):
        if self.dovecot.lmtp_port is None:
            raise HarnessError('start the Dovecot before the Postfix (its LMTP port is needed)')
        main = MAIN_CF.format(
            root=self.root, mail_owner=MAIL_OWNER, setgid_group=SETGID_GROUP,
            syslog_name=self.syslog_name, myhostname=self.myhostname, host=HOST, domain=DOMAIN,
            lmtp_port=self.dovecot.lmtp_port, message_size_limit=self.message_size_limit,
            cert=self.dovecot.cert_path, key=self.dovecot.key_path,
            sasl_path=self.dovecot.auth_socket_path, relay_restrictions=self._relay_restrictions(),
            extra=self.extra_config)
        master = MASTER_CF.format(host=HOST, port=self.port, tls_port=self.tls_port,
                                  syslog_name=self.syslog_name)
        _write_cold(os.path.join(self.conf_dir, 'main.cf'), main)
        _write_cold(os.path.join(self.conf_dir, 'master.cf'), master)
        self._write_maps()

    def _layout_queue(self):
        """Creates the queue directories as `post-install create-missing` would (owners and
        modes of Postfix 3.7's postfix-files) and drops `quick-start`, so that `postfix start`
        skips its integrity check (~2.5 s for a fresh queue). Returns False when the users are
        missing (then the normal check runs and says why)."""
        try:
            import grp, pwd  # pylint: disable=import-outside-toplevel,multiple-imports
            owner = pwd.getpwnam(MAIL_OWNER).pw_uid
            postdrop = grp.getgrnam(SETGID_GROUP).gr_gid
        except KeyError:
            return False
        layout = [(d, owner, 0, 0o700) for d in ('active', 'bounce', 'corrupt', 'defer',
                                                   'deferred', 'flush', 'hold', 'incoming',
                                                   'private', 'saved', 'trace')]
        layout += [('maildrop', owner, postdrop, 0o730), ('public', owner, postdrop, 0o710),
                   ('pid', 0, 0, 0o755)]
        for name, uid, gid, mode in layout:
            path = os.path.join(self.queue_dir, name)
            os.makedirs(path, exist_ok=True)
            os.chown(path, uid, gid)
            os.chmod(path, mode)
        open(os.path.join(self.queue_dir, 'quick-start'), 'w', encoding='ascii').close()
        return True

    def _postfix(self, *args, timeout=30):
        env = {k: v for k, v in os.environ.items() if k != 'MAIL_CONFIG'}
        return subprocess.run([POSTFIX_BIN, '-c', self.conf_dir, *args], capture_output=True,
                              text=True, timeout=timeout, check=False, env=env,
                              stdin=subprocess.DEVNULL)

    # ---- lifecycle ---------------------------------------------------------------------------
    def _read_master_pid(self):
        """The running master's pid from <queue>/pid/master.pid, None when that file is missing
        or stale (no process named master has that pid)."""
        try:
            with open(os.path.join(self.queue_dir, 'pid', 'master.pid'), encoding='ascii') as f:
                pid = int(f.read().split()[0])
            with open(f'/proc/{pid}/comm', encoding='ascii') as f:
                return pid if f.read().strip() == 'master' else None
        except (OSError, ValueError, IndexError):
            return None

    def _listening(self):
        with socket.create_connection((HOST, self.port), timeout=2) as s:
            s.settimeout(3)
            if not s.recv(64).startswith(b'220'):
                return False
        with socket.create_connection((HOST, self.tls_port), timeout=2):
            pass
        return True

    def start(self, timeout=30):
        """Writes the config, starts the master and waits until the SMTP port greets."""
        if self.running:
            raise HarnessError('postfix already running')
        fresh_ports = self.port is None
        for attempt in range(5):
            if fresh_ports:
                self.port, self.tls_port = free_port(), free_port()
                if self.port == self.tls_port:
                    continue
            elif attempt:
                time.sleep(0.5)  # a restart keeps its ports: one may linger a moment
            self._write_config()
            mark = self._log_size()
            deadline = time.monotonic() + timeout
            try:
                os.unlink(os.path.join(self.queue_dir, 'pid', 'master.pid'))
            except OSError:
                pass
            if attempt == 0:
                self._layout_queue()  # later attempts: the full check (clearer errors)
            try:
                r = self._postfix('start', timeout=timeout)
                out = r.stdout + r.stderr
                ok = r.returncode == 0
            except subprocess.TimeoutExpired as exc:
                out, ok = f'postfix start timed out: {exc}', False
            self.master_pid = self._read_master_pid()
            if ok:
                while time.monotonic() < deadline:
                    try:
                        if self._listening():
                            _live.add(self)
                            return self
                    except OSError:
                        pass
                    time.sleep(0.05)
                out += '\n(no SMTP greeting in time)'
            out += '\n' + self.log_since(mark)
            self._kill()
            if 'Address already in use' in out and attempt < 4:
                continue
            raise HarnessError(f'postfix did not start (root {self.root}):\n{out[-4000:]}')
        raise HarnessError('postfix did not start: no free ports')

    def _kill(self, timeout=10):
        pid = self.master_pid or self._read_master_pid()
        self.master_pid = None
        _live.discard(self)
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)  # the master SIGTERMs its process group and exits
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            os.killpg(pid, signal.SIGKILL)  # whatever of the group is left (setsid: pgid == pid)
        except (ProcessLookupError, PermissionError):
            pass
        end = time.monotonic() + 5
        while _pid_alive(pid) and time.monotonic() < end:
            time.sleep(0.05)

    def stop(self, timeout=10):
        """Stops the master and every process of this instance (bounded)."""
        self._kill(timeout)

    def restart(self):
        self.stop()
        return self.start()

    def processes(self):
        """{pid: name} of the live processes of this instance (the master's process group)."""
        pgrp, out = self.master_pid, {}
        if pgrp is None:
            return out
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open(f'/proc/{entry}/stat', encoding='utf-8', errors='replace') as f:
                    stat = f.read()
            except OSError:
                continue
            name = stat[stat.find('(') + 1:stat.rfind(')')]
            fields = stat[stat.rfind(')') + 2:].split()
            if len(fields) > 2 and fields[0] != 'Z' and int(fields[2]) == pgrp:
                out[int(entry)] = name
        return out

    def _busy(self, pids):
        """Those of pids that hold an established connection on our SMTP ports (a session)."""
        ports = {self.port, self.tls_port}
        inodes = set()
        try:
            with open('/proc/net/tcp', encoding='ascii') as f:
                for line in f.readlines()[1:]:
                    cols = line.split()
                    if cols[3] == '01' and int(cols[1].split(':')[1], 16) in ports:  # ESTABLISHED
                        inodes.add(f'socket:[{cols[9]}]')
        except (OSError, IndexError, ValueError):
            return set(pids)
        busy = set()
        for pid in pids:
            try:
                fds = os.listdir(f'/proc/{pid}/fd')
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f'/proc/{pid}/fd/{fd}') in inodes:
                        busy.add(pid)
                        break
                except OSError:
                    pass
        return busy

    def reload(self, timeout=10):
        """Rewrites the maps (users, recipient_access) and main.cf/master.cf, then `postfix
        reload`. Returns once the idle smtpd processes of before are gone (they go ~10 ms after
        the master's SIGHUP; one serving a client goes when its session ends): a connection made
        afterwards is served with the new tables."""
        self._write_config()
        old = [pid for pid, name in self.processes().items() if name == 'smtpd']
        r = self._postfix('reload', timeout=timeout)
        if r.returncode != 0:
            raise HarnessError(f'postfix reload failed: {r.stdout}{r.stderr}')
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            idle = [p for p in old if _pid_alive(p)]
            if not idle or not set(idle) - self._busy(idle):
                break
            time.sleep(0.01)

    def set_recipient_access(self, address, action):
        """A per-address answer at RCPT, e.g. ('x@localhost', '452 4.2.2 mailbox full');
        action None removes it. Takes effect at once (reload)."""
        if action is None:
            self.recipient_access.pop(address, None)
        else:
            self.recipient_access[address] = action
        if self.running:
            self.reload()

    def sync_users(self):
        """After dovecot.add_user(): lets Postfix accept mail for the new users."""
        if self.running:
            self.reload()

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
        return self.master_pid is not None and _pid_alive(self.master_pid)

    # ---- logs and queue ----------------------------------------------------------------------
    def _log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log(self):
        """The mail log of this instance (maillog_file, written by postlogd)."""
        return self.log_since(0)

    log_text = log

    def log_mark(self):
        return self._log_size()

    def log_since(self, mark):
        try:
            with open(self.log_path, 'rb') as f:
                f.seek(mark)
                return f.read().decode('utf-8', errors='replace')
        except OSError:
            return ''

    def deliveries(self, since=0):
        """(recipient, status) of every delivery attempt logged by the lmtp client, e.g.
        ('user2@localhost', 'sent')."""
        pat = re.compile(r'/lmtp\[\d+\]: \w+: to=<([^>]*)>.*? status=(\w+)')
        return [m.groups() for m in map(pat.search, self.log_since(since).splitlines()) if m]

    def queue_ids(self):
        """Queue ids of messages still queued (postqueue -j)."""
        r = subprocess.run(['/usr/sbin/postqueue', '-c', self.conf_dir, '-j'], capture_output=True,
                           text=True, timeout=15, check=False)
        return re.findall(r'"queue_id":\s*"([^"]+)"', r.stdout)

    def flush(self):
        """Retries deferred mail now (postqueue -f), e.g. after the Dovecot came back."""
        subprocess.run(['/usr/sbin/postqueue', '-c', self.conf_dir, '-f'], capture_output=True,
                       timeout=15, check=False)

    # ---- clients -----------------------------------------------------------------------------
    def client_tls_context(self):
        return ssl.create_default_context(cafile=self.ca_file)

    def smtp(self, security='starttls', user=None, password=None, token=None, host='localhost',
             timeout=15):
        """An smtplib client after EHLO. security: 'starttls', 'tls' (implicit, tls_port) or
        'none'. With user: AUTH PLAIN with password (default: the Dovecot password), or AUTH
        XOAUTH2 with token."""
        if security == 'tls':
            c = smtplib.SMTP_SSL(host, self.tls_port, timeout=timeout,
                                 context=self.client_tls_context())
        else:
            c = smtplib.SMTP(host, self.port, timeout=timeout)
        try:
            c.ehlo('client.el-test.invalid')
            if security == 'starttls':
                c.starttls(context=self.client_tls_context())
                c.ehlo('client.el-test.invalid')
            if user is not None:
                if token is not None:
                    c.auth('XOAUTH2', xoauth2_responder(user, token))
                else:
                    pw = self.dovecot.password(user) if password is None else password
                    c.login(user, pw)
        except BaseException:
            c.close()
            raise
        return c
