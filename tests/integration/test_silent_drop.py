"""A server that stops answering (its imap process frozen with SIGSTOP: the TCP connection stays
up, nothing is ever answered) is noticed: with --recheck-interval 3s the service leaves IDLE,
DONE gets no answer within --done-timeout 2s, so it drops the connection, reconnects on a new
one and delivers mail again. The frozen process is resumed and killed in the clean-up."""

import os
import re
import signal
import time
import unittest
import uuid

from harness.base import IntegrationCase, log, wait_until

NOTICE_WITHIN = 15.0   # recheck 3 s + done timeout 2 s, with a generous margin for a busy machine


def _stat(pid):
    """(state, session id) of a process from /proc/<pid>/stat, or None if it is gone."""
    try:
        with open(f'/proc/{pid}/stat', encoding='ascii', errors='replace') as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(')') + 2:].split()
    return fields[0], int(fields[3])  # state, (ppid, pgrp,) session


def _title(pid):
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return f.read().replace(b'\0', b' ').decode('utf-8', errors='replace').strip()
    except OSError:
        return ''


def imap_processes(dovecot, user):
    """{pid: title} of this Dovecot instance's imap (mail) processes serving user: only processes
    in the Dovecot master's session (start_new_session), never imap-login or anything else."""
    if not dovecot.running:
        return {}
    sid = dovecot.proc.pid
    out = {}
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        st = _stat(int(name))
        if st is None or st[1] != sid:
            continue
        title = _title(int(name))
        # verbose_proctitle: "dovecot/imap [user1 127.0.0.1 IDLE]" (login processes are
        # "dovecot/imap-login ...", with the instance name as prefix maybe)
        if re.search(r'(^|/)imap \[' + re.escape(user) + r' ', title):
            out[int(name)] = title
    return out


def metric(text, name):
    m = re.search(r'^' + re.escape(name) + r'(?:\{\})? (\S+)$', text or '', re.M)
    return float(m.group(1)) if m else None


class SilentDropTest(IntegrationCase):
    dovecot_options = {'extra_config': 'verbose_proctitle = yes'}
    service_options = {'extra_args': ['--recheck-interval', '3s', '--done-timeout', '2s']}

    def reconnects(self):
        r = self.service.metrics()
        self.assertEqual(r.status, 200, r)
        value = metric(r.text, 'el_imap_reconnects_total')
        self.assertIsNotNone(value, f'no el_imap_reconnects_total in /metrics:\n{r.text[:2000]}')
        return value

    def freeze_idle_process(self, user, timeout=20):
        """SIGSTOPs the one imap process of user that is in IDLE (the service's session).
        Retries when the process was caught outside IDLE (it could hold a maildir lock then,
        which would block LMTP delivery later). Returns (pid, title)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            procs = imap_processes(self.dovecot, user)
            last = procs
            idle = {p: t for p, t in procs.items() if t.endswith('IDLE]')}
            if len(procs) == 1 and len(idle) == 1:
                pid = next(iter(idle))
                os.kill(pid, signal.SIGSTOP)
                self.addCleanup(self._thaw, pid)
                wait_until(lambda: (_stat(pid) or ('?',))[0] in ('T', 't'), 5,
                           what=f'process {pid} stopped')
                title = _title(pid)  # frozen now: cannot change any more
                if title.endswith('IDLE]'):
                    return pid, title
                log(f'caught {pid} outside IDLE ({title!r}); resuming and retrying')
                os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)
        raise AssertionError(f'no single imap process of {user} in IDLE within {timeout}s: {last}')

    def _thaw(self, pid):
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return

    def test_frozen_server_is_noticed(self):
        mid = self.register('user1')
        tag = uuid.uuid4().hex[:8]
        self.inject('user1', f'before {tag}')
        self.hook.wait_messages(1, 30, mailbox_id=mid)
        st0 = self.service.wait_state(mid, 'idle', timeout=20)
        before = self.reconnects()
        mark = self.dovecot.log_mark()

        pid, title = self.freeze_idle_process('user1')
        t0 = time.monotonic()
        log(f'froze imap process {pid} ({title!r}); status before: {st0}; reconnects={before}')

        # Noticed: the state leaves idle (backoff or connecting) or a reconnect is counted.
        seen = []

        def noticed():
            st = self.service.get_mailbox(mid)
            seen.append(st.get('state'))
            return (st.get('state') in ('backoff', 'connecting')
                    or self.reconnects() > before
                    or st.get('connected_since') != st0.get('connected_since'))
        try:
            wait_until(noticed, NOTICE_WITHIN, interval=0.1, what='the frozen server noticed')
        except TimeoutError:
            self.fail(f'the service did not notice the frozen server within {NOTICE_WITHIN}s; '
                      f'states seen: {sorted(set(seen))}')
        noticed_after = time.monotonic() - t0
        log(f'noticed after {noticed_after:.1f}s; states seen: {sorted(set(s for s in seen if s))}')

        # Back to idle on a new connection (a new imap process, a new login).
        def idle_again():
            st = self.service.get_mailbox(mid)
            seen.append(st.get('state'))
            if st.get('state') == 'idle' and st.get('connected_since') != st0.get('connected_since'):
                return st
            return None
        st1 = wait_until(idle_again, 30, interval=0.1, what='idle on a new connection')
        log(f'idle again after {time.monotonic() - t0:.1f}s: {st1}')
        self.assertGreaterEqual(self.dovecot.successful_logins('user1', since=mark), 1,
                                'no new login in the Dovecot log')
        others = [p for p in imap_processes(self.dovecot, 'user1') if p != pid]
        self.assertTrue(others, 'no new imap process serving user1')
        self.assertEqual(_stat(pid)[0] in ('T', 't'), True, 'the frozen process was resumed?')
        after = self.reconnects()
        log(f'el_imap_reconnects_total {before} -> {after}')
        self.assertGreater(after, before, 'el_imap_reconnects_total did not grow')

        # The trouble was reported once (mailbox.state backoff, with the error) and the
        # recovery once (idle).
        def since_freeze(_=None):
            return [d for d in self.hook.events('mailbox.state', mailbox_id=mid)
                    if d.arrived >= t0]
        self.hook.wait_for(lambda _: len(since_freeze()) >= 2, 15, '2 mailbox.state events')
        time.sleep(0.5)  # any extra (repeated) event would show up now
        events = since_freeze()
        states = [d.data.get('state') for d in events]
        log(f'mailbox.state events since the freeze: {[d.data for d in events]}')
        self.assertEqual(states, ['backoff', 'idle'], [d.data for d in events])
        self.assertTrue(str(events[0].data.get('error', '')).startswith('INBOX'), events[0].data)
        self.assertEqual(events[0].data.get('previous'), 'idle', events[0].data)
        self.assert_signed(events)

        # Mail flows again on the new connection.
        self.inject('user1', f'after {tag}')
        msgs = self.hook.wait_messages(2, 30, mailbox_id=mid)
        self.assertEqual([m.data.get('subject') for m in msgs], [f'before {tag}', f'after {tag}'])
        self.assert_signed(msgs)

        # The service is alive and well.
        self.assertTrue(self.service.running, 'the service process exited')
        self.assertEqual(self.service.request('GET', '/healthz', token=None).status, 200)
        self.assertEqual(self.service.get_mailbox(mid).get('state'), 'idle')


if __name__ == '__main__':
    unittest.main()
