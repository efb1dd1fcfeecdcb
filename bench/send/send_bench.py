#!/usr/bin/python3
"""Sending benchmark: email-listener's POST /v1/mailboxes/{id}/send through a private Postfix that
relays over LMTP into a private Dovecot, where the receiving mailboxes (registered with the same
service) get the mail back through IDLE -> fetch -> webhook `message.new`.

Phase 1, throughput: --emails (500) emails of ~20 KB (a 16 KB binary attachment + text + html),
POSTed by --clients (4) threads on keep-alive connections from one sender mailbox (--senders) to
--receivers (3) mailboxes round-robin. Reports the API acceptance rate (202s/s, POST latency
p50/p99), the sending throughput (emails/s until the last `message.sent`), the delivery
throughput (until the last `message.new`), the largest backlog (accepted, not yet sent), CPU
use, and checks that every email is in a receiver's INBOX and in the sender's Sent folder
(Dovecot message counts over IMAP). Exit status 1 when any check fails.

Phase 2, full-loop latency on an idle system: --latency-emails (100) emails one at a time; per
email: POST -> 202, POST -> `message.sent`, POST -> Dovecot's LMTP "saved mail" (its log, us),
saved -> `message.new`, `message.sent` -> `message.new`, POST -> `message.new`; and Postfix's own
delay (smtpd receipt -> LMTP done, from its log line for the send's queue id). POST -> SMTP 250
comes from the service's `send_delivered_to_smtp` log line (info level, ms resolution).
At the end: the service's VmRSS/VmHWM, its state file's size, its el_sends_* metrics.

usage: bench/send/send_bench.py [--binary PATH] [--emails 500] [--clients 4] [--senders 1]
       [--receivers 3] [--latency-emails 100] [--security tls|plain] [--json FILE|-]
Standard library only (/usr/bin/python3), run as root (Dovecot and Postfix need it). Only
127.0.0.1; every loop is bounded in count and time; everything started is stopped on exit.
"""

import argparse
import base64
import http.client
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(SOURCE, 'tests', 'integration'))

HOST = '127.0.0.1'
SECRET = 'bench-send-secret'


def pct(values, p):
    if not values:
        return float('nan')
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


def dist(values_ms):
    return {'n': len(values_ms), 'p50': pct(values_ms, 50), 'p90': pct(values_ms, 90),
            'p99': pct(values_ms, 99), 'max': max(values_ms) if values_ms else float('nan')}


def fmt_dist(name, values_ms):
    d = dist(values_ms)
    return (f'  {name:<38} n={d["n"]:4d}  p50={d["p50"]:8.1f}  p90={d["p90"]:8.1f}  '
            f'p99={d["p99"]:8.1f}  max={d["max"]:8.1f}  ms')


def bare_id(message_id):
    return (message_id or '').strip().strip('<>').strip()


def rss_kib(pid):
    out = {}
    try:
        with open(f'/proc/{pid}/status', encoding='ascii') as f:
            for line in f:
                if line.startswith(('VmRSS:', 'VmHWM:')):
                    out[line.split(':')[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


def proc_cpu_seconds(pid):
    """utime + stime of one process (s)."""
    try:
        with open(f'/proc/{pid}/stat', encoding='ascii') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    except (OSError, IndexError, ValueError):
        return float('nan')


def machine_cpu():
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    with open('/proc/stat', encoding='ascii') as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals) - idle, sum(vals)


class Tracker:
    """Webhook events by send id / Message-ID, recorded on the receiver's handler threads."""

    def __init__(self):
        self.cond = threading.Condition()
        self.sent = {}      # send_id -> (monotonic, wall, data)
        self.failed = {}    # send_id -> data
        self.new = {}       # bare Message-ID -> (monotonic, wall, mailbox_id)
        self.dup_new = 0
        self.dup_sent = 0
        self.other = 0

    def on_delivery(self, d):
        if not d.accepted or not isinstance(d.json, dict):
            return
        data = d.data
        with self.cond:
            if d.type == 'message.sent':
                if data.get('send_id') in self.sent:
                    self.dup_sent += 1
                else:
                    self.sent[data.get('send_id')] = (d.arrived, d.arrived_wall, data)
            elif d.type == 'message.send_failed':
                self.failed[data.get('send_id')] = data
            elif d.type == 'message.new':
                mid = bare_id(data.get('message_id'))
                if mid in self.new:
                    self.dup_new += 1
                else:
                    self.new[mid] = (d.arrived, d.arrived_wall, d.json.get('mailbox_id'))
            else:
                self.other += 1
            self.cond.notify_all()

    def wait(self, predicate, deadline):
        """Waits (bounded by deadline, monotonic) until predicate() holds; returns it."""
        with self.cond:
            while True:
                ok = predicate()
                if ok or time.monotonic() >= deadline:
                    return ok
                self.cond.wait(min(0.5, max(0.01, deadline - time.monotonic())))


class Api:
    """One keep-alive HTTP/1.1 connection to the service (one per client thread)."""

    def __init__(self, port):
        self.port = port
        self.conn = None
        self.reconnects = 0

    def request(self, method, path, body=None, headers=None):
        hdrs = {'Content-Type': 'application/json'} if body is not None else {}
        hdrs.update(headers or {})
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                r = self.conn.getresponse()
                payload = r.read()
                if (r.getheader('Connection') or '').lower() == 'close':
                    self.close()
                return r.status, payload
            except (http.client.HTTPException, OSError):
                self.close()
                self.reconnects += 1
                if attempt:  # a POST is retried once: it carries an Idempotency-Key
                    raise
        raise AssertionError('unreachable')

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def email_body(dovecot, receiver, subject, attachment_bytes):
    blob = os.urandom(attachment_bytes)
    text = ('This is the plain text part of a benchmark email.\n' * 20)[:1000]
    html = ('<html><body><h1>Benchmark</h1>'
            + '<p>This is the <b>html</b> part of a benchmark email.</p>' * 16 + '</body></html>')
    return json.dumps({
        'to': [{'address': dovecot.address(receiver), 'name': 'Bench Receiver'}],
        'subject': subject,
        'text': text,
        'html': html,
        'attachments': [{'filename': 'data.bin', 'content_type': 'application/octet-stream',
                         'content_base64': base64.b64encode(blob).decode('ascii')}],
    }).encode('utf-8')


def imap_size_of_first(dovecot, user, folder):
    from harness.dovecot import HOST as DHOST  # noqa: E402
    c = dovecot.imap(user, security='none', host=DHOST)
    try:
        typ, _ = c.select(folder, readonly=True)
        if typ != 'OK':
            return None
        typ, data = c.fetch('1', '(RFC822.SIZE)')
        m = re.search(rb'RFC822\.SIZE (\d+)', data[0] or b'') if data else None
        return int(m.group(1)) if m else None
    finally:
        try:
            c.logout()
        except Exception:  # pylint: disable=broad-except
            pass


def dovecot_saved_times(dovecot):
    """{bare Message-ID: wall time} of every LMTP 'saved mail to INBOX' in Dovecot's log."""
    pat = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) lmtp\([^)]*\)\S*: Info: '
                     r'msgid=<([^>]*)>: saved mail to ')
    out = {}
    for line in dovecot.log_text().splitlines():
        m = pat.match(line)
        if m:
            t = datetime.strptime(m.group(1), '%Y-%m-%d %H:%M:%S.%f').timestamp()
            out.setdefault(m.group(2), t)
    return out


def service_smtp_times(service):
    """{send id: wall time} of the service's `send_delivered_to_smtp` log lines (info level:
    the SMTP server answered 250 to the end of DATA)."""
    pat = re.compile(r'^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z \w+ '
                     r'send_delivered_to_smtp .*?\bsend=(\w+)')
    out = {}
    for line in service.log_text().splitlines():
        m = pat.match(line)
        if m:
            ts = m.group(1)
            fmt = '%Y-%m-%dT%H:%M:%S.%f' if '.' in ts else '%Y-%m-%dT%H:%M:%S'
            t = datetime.strptime(ts, fmt).replace(tzinfo=timezone.utc).timestamp()
            out.setdefault(m.group(2), t)
    return out


def postfix_delays(postfix):
    """{queue id: (delay s, 'a/b/c/d')} from the LMTP client's status=sent lines."""
    pat = re.compile(r'/lmtp\[\d+\]: (\w+): to=<[^>]*>.*? delay=([\d.]+), delays=([\d./]+),'
                     r'.*? status=sent')
    out = {}
    for line in postfix.log().splitlines():
        m = pat.search(line)
        if m:
            out[m.group(1)] = (float(m.group(2)), m.group(3))
    return out


def sends_by_state(service, send_ids, limit=50):
    """GET /v1/sends/{id} of (at most limit of) the given sends: {state: [ids]}."""
    api = Api(service.port)
    out = {}
    try:
        for sid in list(send_ids)[:limit]:
            try:
                status, body = api.request('GET', f'/v1/sends/{sid}')
                st = json.loads(body).get('state') if status == 200 else f'http {status}'
            except (OSError, ValueError, http.client.HTTPException) as exc:
                st = f'error {exc!r}'
            out.setdefault(st, []).append(sid)
    finally:
        api.close()
    return out


def state_file_info(service):
    """Size of the service's state file and the sends it holds (None without one)."""
    path = service.state_file
    if not path:
        return None
    try:
        size = os.path.getsize(path)
        with open(path, encoding='utf-8') as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return {'bytes': size, 'sends': len(doc.get('sends') or []),
            'mailboxes': len(doc.get('mailboxes') or [])}


def metrics_lines(service):
    try:
        text = service.metrics().text
    except Exception:  # pylint: disable=broad-except
        return []
    return [ln for ln in text.splitlines() if ln.startswith(('el_sends', 'el_send'))]


# ---- phase 1 ---------------------------------------------------------------------------------
def throughput_phase(args, dovecot, service, tracker, senders, receivers):
    n = args.emails
    run_tag = uuid.uuid4().hex[:8]
    print(f'phase 1: building {n} request bodies ...', flush=True)
    bodies = [email_body(dovecot, receivers[i % len(receivers)], f'bench {run_tag} #{i}',
                         args.attachment_bytes) for i in range(n)]
    results = [None] * n  # (t_start, t_end, status, send_id, message_id)
    next_i = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + args.timeout
    errors = []

    def client():
        api = Api(service.port)
        try:
            while time.monotonic() < deadline:
                with lock:
                    i = next_i[0]
                    if i >= n:
                        return
                    next_i[0] += 1
                t0 = time.monotonic()
                try:
                    status, payload = api.request(
                        'POST', f'/v1/mailboxes/{senders[i % len(senders)]}/send', bodies[i],
                        headers={'Idempotency-Key': f'bench-{run_tag}-{i}'})
                except (OSError, http.client.HTTPException) as exc:
                    errors.append(f'#{i}: {exc!r}')
                    continue
                t1 = time.monotonic()
                sid = mid = None
                if status == 202:
                    j = json.loads(payload)
                    sid, mid = j['send_id'], bare_id(j['message_id'])
                else:
                    errors.append(f'#{i}: HTTP {status} {payload[:200]!r}')
                results[i] = (t0, t1, status, sid, mid)
        finally:
            with lock:
                client.reconnects += api.reconnects
            api.close()
    client.reconnects = 0

    threads = [threading.Thread(target=client, daemon=True, name=f'client{k}')
               for k in range(args.clients)]
    cpu0, svc0 = machine_cpu(), proc_cpu_seconds(service.proc.pid)
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()) + 35)
    done = [r for r in results if r is not None]
    accepted = [r for r in done if r[2] == 202]
    last_202 = max((r[1] for r in accepted), default=start)
    post_ms = [(r[1] - r[0]) * 1000 for r in done]
    by_start = [(r[1] - r[0]) * 1000 for r in sorted(done)]
    tenth = max(1, len(by_start) // 10)
    print(f'phase 1: {len(accepted)}/{n} accepted (202) in {last_202 - start:.2f}s; '
          f'waiting for message.sent and message.new ...', flush=True)

    send_ids = {r[3] for r in accepted}
    msg_ids = {r[4] for r in accepted}

    def all_in():
        return (all(s in tracker.sent or s in tracker.failed for s in send_ids)
                and all(m in tracker.new for m in msg_ids))
    complete = tracker.wait(all_in, deadline)
    with tracker.cond:
        sent_t = [tracker.sent[s][0] for s in send_ids if s in tracker.sent]
        new_t = [tracker.new[m][0] for m in msg_ids if m in tracker.new]
        failed = [s for s in send_ids if s in tracker.failed]
        folder_states = {}
        for s in send_ids:
            if s in tracker.sent:
                sf = (tracker.sent[s][2].get('sent_folder') or {}).get('state', 'none')
                folder_states[sf] = folder_states.get(sf, 0) + 1
        per_receiver = {}
        for m in msg_ids:
            if m in tracker.new:
                mb = tracker.new[m][2]
                per_receiver[mb] = per_receiver.get(mb, 0) + 1
    stuck = {}
    missing_sent = send_ids - set(tracker.sent) - set(failed)
    if missing_sent:
        stuck = sends_by_state(service, missing_sent)
    last_sent = max(sent_t, default=start)
    last_new = max(new_t, default=start)
    span = int(max(last_sent, last_new) - start) + 1
    sent_hist = [0] * min(span, 3600)
    for t in sent_t:
        sent_hist[min(len(sent_hist) - 1, int(t - start))] += 1
    marks = sorted([(r[1], 1) for r in accepted] + [(t, -1) for t in sent_t])
    level = max_backlog = 0
    for _, step in marks:
        level += step
        max_backlog = max(max_backlog, level)
    cpu1, svc1 = machine_cpu(), proc_cpu_seconds(service.proc.pid)
    busy = (cpu1[0] - cpu0[0]) / max(1, cpu1[1] - cpu0[1])
    svc_cpu = svc1 - svc0
    elapsed_cpu = time.monotonic() - start
    time.sleep(0.5)  # let Dovecot's last APPENDs and LMTP deliveries settle before counting
    inbox_counts = {u: dovecot.message_count(u, 'INBOX') for u in receivers}
    sent_counts = {u: dovecot.message_count(u, 'Sent') for u in senders}
    sent_folder_count = sum(sent_counts.values())
    size_in = imap_size_of_first(dovecot, receivers[0], 'INBOX')
    size_sent = imap_size_of_first(dovecot, senders[0], 'Sent')
    r = {
        'emails': n, 'clients': args.clients, 'senders': len(senders),
        'receivers': len(receivers), 'max_backlog': max_backlog,
        'message_sent_per_second': sent_hist,
        'attachment_bytes': args.attachment_bytes,
        'request_body_bytes': sum(len(b) for b in bodies) // max(1, n),
        'message_bytes_received': size_in, 'message_bytes_sent_folder': size_sent,
        'posted': len(done), 'accepted': len(accepted), 'post_errors': errors[:20],
        'post_error_count': len(errors), 'client_reconnects': client.reconnects,
        'accept_seconds': last_202 - start,
        'accept_rate_per_s': len(accepted) / max(1e-9, last_202 - start),
        'post_latency_ms': dist(post_ms),
        'post_latency_first_tenth_ms': dist(by_start[:tenth]),
        'post_latency_last_tenth_ms': dist(by_start[-tenth:]),
        'sent_events': len(sent_t), 'send_failed_events': len(failed),
        'sent_seconds': last_sent - start,
        'sent_rate_per_s': len(sent_t) / max(1e-9, last_sent - start),
        'new_events': len(new_t), 'new_seconds': last_new - start,
        'new_rate_per_s': len(new_t) / max(1e-9, last_new - start),
        'sent_folder_in_events': folder_states,
        'message_new_per_receiver': per_receiver,
        'dovecot_inbox_counts': inbox_counts, 'dovecot_inbox_total': sum(inbox_counts.values()),
        'dovecot_sent_folder_count': sent_folder_count, 'dovecot_sent_folder_counts': sent_counts,
        'machine_cpu_busy': busy, 'cpu_window_s': elapsed_cpu,
        'service_cpu_s': svc_cpu, 'service_cpu_ms_per_email': svc_cpu * 1000 / max(1, len(sent_t)),
        'complete': bool(complete), 'stuck_sends_by_state': {k: len(v) for k, v in stuck.items()},
        'stuck_examples': {k: v[:3] for k, v in stuck.items()},
        'duplicate_message_new': tracker.dup_new, 'duplicate_message_sent': tracker.dup_sent,
    }
    return r


# ---- phase 2 ---------------------------------------------------------------------------------
def latency_phase(args, dovecot, postfix, service, tracker, senders, receivers):
    sender = senders[0]
    run_tag = uuid.uuid4().hex[:8]
    api = Api(service.port)
    samples = []  # dicts
    timeouts = 0
    deadline = time.monotonic() + args.latency_timeout
    try:
        for i in range(args.latency_emails):
            if time.monotonic() >= deadline:
                print(f'phase 2: time limit reached after {i} emails', flush=True)
                break
            body = email_body(dovecot, receivers[i % len(receivers)], f'latency {run_tag} #{i}',
                              args.attachment_bytes)
            time.sleep(args.gap)
            w0, t0 = time.time(), time.monotonic()
            status, payload = api.request('POST', f'/v1/mailboxes/{sender}/send', body,
                                          headers={'Idempotency-Key': f'lat-{run_tag}-{i}'})
            t1 = time.monotonic()
            if status != 202:
                print(f'phase 2: #{i} HTTP {status} {payload[:200]!r}', flush=True)
                continue
            j = json.loads(payload)
            sid, mid = j['send_id'], bare_id(j['message_id'])
            ok = tracker.wait(lambda: sid in tracker.sent and mid in tracker.new
                              or sid in tracker.failed,
                              min(deadline, time.monotonic() + args.per_email_timeout))
            with tracker.cond:
                s = tracker.sent.get(sid)
                nw = tracker.new.get(mid)
            if not ok or s is None or nw is None:
                timeouts += 1
                print(f'phase 2: #{i} send {sid} incomplete (sent={s is not None}, '
                      f'new={nw is not None}, failed={sid in tracker.failed})', flush=True)
                continue
            samples.append({'i': i, 'send_id': sid, 'message_id': mid, 'w0': w0,
                            'post': (t1 - t0) * 1000, 'to_sent': (s[0] - t0) * 1000,
                            'to_new': (nw[0] - t0) * 1000, 'sent_to_new': (nw[0] - s[0]) * 1000,
                            'new_wall': nw[1], 'queue_id': s[2].get('queue_id')})
    finally:
        api.close()
    saved = dovecot_saved_times(dovecot)
    delays = postfix_delays(postfix)
    smtp_t = service_smtp_times(service)
    to_saved, saved_to_new, pf_delay, to_smtp, smtp_to_sent = [], [], [], [], []
    for smp in samples:
        t_smtp = smtp_t.get(smp['send_id'])
        if t_smtp is not None:
            to_smtp.append((t_smtp - smp['w0']) * 1000)
            smtp_to_sent.append(smp['to_sent'] - (t_smtp - smp['w0']) * 1000)
        t_saved = saved.get(smp['message_id'])
        if t_saved is not None:
            to_saved.append((t_saved - smp['w0']) * 1000)
            saved_to_new.append((smp['new_wall'] - t_saved) * 1000)
        d = delays.get(smp['queue_id'])
        if d is not None:
            pf_delay.append(d[0] * 1000)
    g = lambda k: [smp[k] for smp in samples]  # noqa: E731
    return {
        'emails': args.latency_emails, 'completed': len(samples), 'incomplete': timeouts,
        'gap_s': args.gap,
        'post_to_202_ms': dist(g('post')),
        'post_to_smtp_accepted_ms': dist(to_smtp),
        'smtp_accepted_to_message_sent_ms': dist(smtp_to_sent),
        'post_to_message_sent_ms': dist(g('to_sent')),
        'post_to_lmtp_saved_ms': dist(to_saved),
        'lmtp_saved_to_message_new_ms': dist(saved_to_new),
        'message_sent_to_message_new_ms': dist(g('sent_to_new')),
        'post_to_message_new_ms': dist(g('to_new')),
        'postfix_delay_ms': dist(pf_delay),
        '_raw': {'post_to_202': g('post'), 'post_to_smtp': to_smtp,
                 'smtp_to_sent': smtp_to_sent, 'post_to_sent': g('to_sent'),
                 'post_to_saved': to_saved, 'saved_to_new': saved_to_new,
                 'sent_to_new': g('sent_to_new'), 'post_to_new': g('to_new'),
                 'postfix_delay': pf_delay},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--binary', help='email-listener binary (default: $EMAIL_LISTENER_BIN, '
                                     'else build/email-listener)')
    ap.add_argument('--emails', type=int, default=500, help='phase 1 emails (max 5000)')
    ap.add_argument('--clients', type=int, default=4, help='phase 1 client threads')
    ap.add_argument('--receivers', type=int, default=3)
    ap.add_argument('--senders', type=int, default=1,
                    help='phase 1 sender mailboxes, round-robin (phase 2 uses the first)')
    ap.add_argument('--attachment-bytes', type=int, default=16384)
    ap.add_argument('--timeout', type=float, default=80.0,
                    help='phase 1 time limit, POSTs and all events (s)')
    ap.add_argument('--latency-emails', type=int, default=100, help='phase 2 emails (max 1000)')
    ap.add_argument('--latency-timeout', type=float, default=90.0, help='phase 2 time limit (s)')
    ap.add_argument('--per-email-timeout', type=float, default=15.0)
    ap.add_argument('--gap', type=float, default=0.05, help='pause before each phase 2 POST (s)')
    ap.add_argument('--settle', type=float, default=2.0, help='quiet time between the phases (s)')
    ap.add_argument('--security', choices=('plain', 'tls'), default='tls',
                    help='tls: SMTP with STARTTLS and IMAP over implicit TLS (default); '
                         'plain: both unencrypted')
    ap.add_argument('--log-level', default='info',
                    help='service log level; info is needed for the SMTP-accepted split')
    ap.add_argument('--max-userip-connections', type=int, default=None,
                    help="Dovecot's mail_max_userip_connections (default: Dovecot's, 10)")
    ap.add_argument('--no-state-file', action='store_true',
                    help='diagnostic: run the service without --state-file (sends not durable)')
    ap.add_argument('--skip-throughput', action='store_true')
    ap.add_argument('--skip-latency', action='store_true')
    ap.add_argument('--hold', type=float, default=0.0,
                    help='keep everything running this long at the end, for inspection (s, max 600)')
    ap.add_argument('--json', metavar='FILE', help="write the results as JSON ('-': stdout)")
    args = ap.parse_args()
    args.emails = max(0, min(args.emails, 5000))
    args.latency_emails = max(0, min(args.latency_emails, 1000))
    args.clients = max(1, min(args.clients, 64))
    args.receivers = max(1, min(args.receivers, 50))
    args.senders = max(1, min(args.senders, 50))
    if args.binary:
        os.environ['EMAIL_LISTENER_BIN'] = os.path.abspath(args.binary)

    from harness.dovecot import Dovecot  # noqa: E402
    from harness.postfix import Postfix  # noqa: E402
    from harness.service import Service, binary_path, mailbox_payload  # noqa: E402
    from harness.webhook import WebhookReceiver  # noqa: E402

    def on_term(signum, _frame):
        raise SystemExit(f'signal {signum}')
    signal.signal(signal.SIGTERM, on_term)

    t_begin = time.monotonic()
    tracker = Tracker()
    extra = """
service imap {
  process_limit = 512
}
service imap-login {
  process_min_avail = 4
}
"""
    if args.max_userip_connections:
        extra += f"""
protocol imap {{
  mail_max_userip_connections = {args.max_userip_connections}
}}
"""
    dovecot = Dovecot(users=args.senders + args.receivers, extra_config=extra)
    postfix = None
    hook = WebhookReceiver(SECRET, on_delivery=tracker.on_delivery)
    service = None
    result = {'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'), 'binary': binary_path(),
              'security': args.security, 'cpus': os.cpu_count(),
              'state_file': not args.no_state_file,
              'mail_max_userip_connections': args.max_userip_connections or 'dovecot default (10)'}
    rc = 0
    try:
        dovecot.start()
        postfix = Postfix(dovecot)
        postfix.start()
        hook.start()
        service = Service(hook.url, SECRET, fast=False, log_level=args.log_level,
                          state_file=False if args.no_state_file else None)
        service.start()
        senders = [f'user{i}' for i in range(1, 1 + args.senders)]
        receivers = [f'user{i}' for i in range(1 + args.senders, 1 + args.senders + args.receivers)]
        imap_sec = 'tls' if args.security == 'tls' else 'none'
        smtp_sec = 'starttls' if args.security == 'tls' else 'none'
        for u in senders:
            payload = mailbox_payload(dovecot, u, mailbox_id=u, security=imap_sec)
            payload['smtp'] = {'host': HOST, 'port': postfix.port, 'security': smtp_sec}
            if smtp_sec != 'none':
                payload['smtp']['tls_ca_file'] = postfix.ca_file
            service.add_mailbox(payload)
        for u in receivers:
            service.add_mailbox(mailbox_payload(dovecot, u, mailbox_id=u, security=imap_sec))
        for u in senders + receivers:
            service.wait_state(u, 'idle', timeout=30)
        pid = service.proc.pid
        result['rss_start_kib'] = rss_kib(pid)
        print(f'setup: Dovecot, Postfix, service (pid {pid}) and {1 + len(receivers)} idle '
              f'mailboxes ({len(senders)} sending) in {time.monotonic() - t_begin:.1f}s; '
              f'security={args.security}',
              flush=True)

        if not args.skip_throughput and args.emails:
            p1 = throughput_phase(args, dovecot, service, tracker, senders, receivers)
            result['throughput'] = p1
            result['rss_after_throughput_kib'] = rss_kib(pid)
            result['state_file_after_throughput'] = state_file_info(service)
            if (not p1['complete'] or p1['send_failed_events'] or p1['post_error_count']
                    or p1['dovecot_inbox_total'] != p1['emails']
                    or p1['dovecot_sent_folder_count'] != p1['emails']):
                rc = 1
            time.sleep(args.settle)
        if not args.skip_latency and args.latency_emails:
            print(f'phase 2: {args.latency_emails} emails one at a time ...', flush=True)
            result['latency'] = latency_phase(args, dovecot, postfix, service, tracker, senders,
                                              receivers)
            if result['latency']['incomplete']:
                rc = 1
        result['rss_end_kib'] = rss_kib(pid)
        result['state_file_end'] = state_file_info(service)
        result['metrics'] = metrics_lines(service)
        result['service_alive'] = service.running
        bad = [ln for ln in service.log_text().splitlines()
               if re.match(r'^\S+ (warn|error) ', ln)]
        counts = {}
        for ln in bad:
            key = ' '.join(ln.split()[1:3])
            counts[key] = counts.get(key, 0) + 1
        result['service_log_warn_error_counts'] = counts
        result['service_log_errors'] = bad[:5]
        result['wall_seconds'] = time.monotonic() - t_begin
        report(result)
        if args.json:
            out = {k: v for k, v in result.items()}
            text = json.dumps(out, indent=2, default=str)
            if args.json == '-':
                print(text)
            else:
                with open(args.json, 'w', encoding='utf-8') as f:
                    f.write(text + '\n')
        if args.hold > 0:
            print(f'holding {min(args.hold, 600.0):.0f}s (service pid {pid}) ...', flush=True)
            time.sleep(min(args.hold, 600.0))
        return rc
    finally:
        if service:
            service.cleanup()
        hook.stop()
        if postfix:
            postfix.cleanup()
        dovecot.cleanup()


def report(r):
    print()
    print(f'email-listener send benchmark  {r["date"]}  cpus={r["cpus"]}  '
          f'security={r["security"]}  binary={r["binary"]}')
    print(f'state file: {r["state_file"]}  Dovecot mail_max_userip_connections: '
          f'{r["mail_max_userip_connections"]}')
    p = r.get('throughput')
    if p:
        print(f'\nThroughput: {p["emails"]} emails, {p["clients"]} client threads, '
              f'{p["senders"]} sender(s) -> {p["receivers"]} receivers; request body {p["request_body_bytes"]} B, message '
              f'{p["message_bytes_received"]} B as received ({p["attachment_bytes"]} B attachment)')
        pl = p['post_latency_ms']
        print(f'  API: {p["accepted"]}/{p["posted"]} accepted (202) in {p["accept_seconds"]:.2f}s'
              f' = {p["accept_rate_per_s"]:.1f}/s; POST latency p50={pl["p50"]:.1f} '
              f'p99={pl["p99"]:.1f} max={pl["max"]:.1f} ms; errors={p["post_error_count"]} '
              f'reconnects={p["client_reconnects"]}')
        a, b = p['post_latency_first_tenth_ms'], p['post_latency_last_tenth_ms']
        print(f'  POST latency p50, first tenth of the POSTs {a["p50"]:.1f} ms, last tenth '
              f'{b["p50"]:.1f} ms')
        print(f'  sent (message.sent): {p["sent_events"]} in {p["sent_seconds"]:.2f}s = '
              f'{p["sent_rate_per_s"]:.1f} emails/s; send_failed={p["send_failed_events"]}; '
              f'sent_folder in events: {p["sent_folder_in_events"]}')
        print(f'  delivered (message.new): {p["new_events"]} in {p["new_seconds"]:.2f}s = '
              f'{p["new_rate_per_s"]:.1f} emails/s; per receiver {p["message_new_per_receiver"]}')
        print(f'  Dovecot: INBOX counts {p["dovecot_inbox_counts"]} (total '
              f'{p["dovecot_inbox_total"]}), Sent folder(s) {p["dovecot_sent_folder_counts"]} '
              f'(total {p["dovecot_sent_folder_count"]}); largest backlog (202 but not yet '
              f'message.sent): {p["max_backlog"]}')
        print(f'  message.sent per second: {p["message_sent_per_second"][:40]}')
        print(f'  CPU over {p["cpu_window_s"]:.1f}s: machine {p["machine_cpu_busy"] * 100:.0f}% '
              f'busy ({os.cpu_count()} cores); service {p["service_cpu_s"]:.2f}s = '
              f'{p["service_cpu_ms_per_email"]:.1f} ms per email')
        ok_in = p['dovecot_inbox_total'] == p['emails']
        ok_sent = p['dovecot_sent_folder_count'] == p['emails']
        print(f'  CHECK all in receivers: {"ok" if ok_in else "FAILED"}; all in Sent folder: '
              f'{"ok" if ok_sent else "FAILED"}')
        print(f'  complete={p["complete"]} duplicates: message.new={p["duplicate_message_new"]} '
              f'message.sent={p["duplicate_message_sent"]}')
        if p['stuck_sends_by_state']:
            print(f'  NOT FINISHED: {p["stuck_sends_by_state"]} e.g. {p["stuck_examples"]}')
        if p['post_errors']:
            print(f'  POST errors: {p["post_errors"][:5]}')
        print(f'  service RSS after phase 1: {r.get("rss_after_throughput_kib")}')
    q = r.get('latency')
    if q:
        print(f'\nFull-loop latency: {q["completed"]}/{q["emails"]} emails one at a time '
              f'(incomplete {q["incomplete"]})')
        raw = q['_raw']
        print(fmt_dist('POST -> 202', raw['post_to_202']))
        print(fmt_dist('POST -> SMTP 250 after DATA (svc log)', raw['post_to_smtp']))
        print(fmt_dist('SMTP 250 -> message.sent (Sent APPEND)', raw['smtp_to_sent']))
        print(fmt_dist('POST -> message.sent', raw['post_to_sent']))
        print(fmt_dist('POST -> Dovecot LMTP saved', raw['post_to_saved']))
        print(fmt_dist('LMTP saved -> message.new', raw['saved_to_new']))
        print(fmt_dist('message.sent -> message.new', raw['sent_to_new']))
        print(fmt_dist('POST -> message.new (full loop)', raw['post_to_new']))
        print(fmt_dist('Postfix delay (smtpd -> LMTP done)', raw['postfix_delay']))
    print(f'\nservice RSS: start {r.get("rss_start_kib")} end {r.get("rss_end_kib")} (KiB)')
    print(f'state file after phase 1: {r.get("state_file_after_throughput")}; at the end: '
          f'{r.get("state_file_end")}')
    for ln in r.get('metrics', []):
        print(f'  {ln}')
    if r.get('service_log_errors'):
        print(f'service log warn/error lines by event: {r["service_log_warn_error_counts"]}; '
              'first ones:')
        for ln in r['service_log_errors']:
            print(f'  {ln[:300]}')
    print(f'service alive at the end: {r.get("service_alive")}; wall {r["wall_seconds"]:.1f}s')


if __name__ == '__main__':
    sys.exit(main())
