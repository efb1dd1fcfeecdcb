"""Helper of scripts/demo: runs a private Dovecot with a demo mailbox and a webhook receiver that
prints what it gets, until SIGTERM/SIGINT or --lifetime; injects a message over LMTP.

  demo_env.py up ENV_FILE [--lifetime SECONDS]   writes shell variables to ENV_FILE when ready
  demo_env.py inject LMTP_PORT USER SUBJECT
"""

import argparse
import json
import os
import signal
import smtplib
import sys
import threading
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.dovecot import Dovecot, make_message  # noqa: E402
from harness.webhook import WebhookReceiver  # noqa: E402

DEMO_USER = 'demo'
DEMO_PASSWORD = 'demo-password'


def show(delivery):
    body = delivery.json or {}
    data = body.get('data') or {}
    sig = 'valid' if delivery.signature_ok else 'INVALID'
    head = (f'[webhook] {delivery.status} <- {body.get("type")} mailbox={body.get("mailbox_id")} '
            f'event={delivery.event_id} attempt={delivery.attempt} signature={sig}')
    if body.get('type') == 'message.new':
        frm = (data.get('from') or {}).get('address')
        head += f'\n          uid={data.get("uid")} subject={data.get("subject")!r} from={frm}'
    elif data:
        head += f'\n          data={json.dumps(data)}'
    shown = dict(body)
    if isinstance(shown.get('data'), dict):
        def short(v):
            if isinstance(v, str) and len(v) > 200:
                return v[:200] + '...'
            if isinstance(v, list) and len(v) > 4:
                return f'<{len(v)} items>'
            return v
        shown['data'] = {k: short(v) for k, v in shown['data'].items()}
    print(head + '\n' + json.dumps(shown, indent=2), flush=True)
    if delivery.accepted and body.get('type') == 'message.new':
        with open(os.environ['DEMO_RECEIVED_FILE'], 'a', encoding='utf-8') as f:
            f.write(f'{data.get("subject")}\n')


def up(env_file, lifetime):
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    os.environ['DEMO_RECEIVED_FILE'] = env_file + '.received'
    open(os.environ['DEMO_RECEIVED_FILE'], 'w', encoding='utf-8').close()
    dovecot = Dovecot(users=0)
    dovecot.add_user(DEMO_USER, DEMO_PASSWORD)
    secret = 'demo-secret-' + uuid.uuid4().hex[:8]
    hook = WebhookReceiver(secret, on_delivery=show)
    try:
        dovecot.start()
        hook.start()
        values = {
            'IMAP_PORT': dovecot.imap_port, 'IMAPS_PORT': dovecot.imaps_port,
            'LMTP_PORT': dovecot.lmtp_port, 'CA_FILE': dovecot.ca_path,
            'HOOK_URL': hook.url, 'HOOK_SECRET': secret, 'DEMO_USER': DEMO_USER,
            'DEMO_PASSWORD': DEMO_PASSWORD, 'DEMO_EMAIL': dovecot.address(DEMO_USER),
            'RECEIVED_FILE': os.environ['DEMO_RECEIVED_FILE'], 'DOVECOT_LOG': dovecot.log_path,
        }
        tmp = env_file + '.tmp'
        with open(tmp, 'w', encoding='utf-8') as f:
            for k, v in values.items():
                f.write(f"{k}='{v}'\n")
        os.replace(tmp, env_file)
        print(f'[demo] {dovecot.describe()}; webhook receiver on {hook.url}', flush=True)
        stop.wait(lifetime)
    finally:
        hook.stop()
        dovecot.cleanup()


def inject(port, user, subject):
    msg = make_message(subject, body='This email was injected over LMTP by scripts/demo.\n',
                       to_addr=f'{user}@localhost')
    with smtplib.LMTP('127.0.0.1', int(port), timeout=15) as lmtp:
        lmtp.sendmail('alice@example.test', [f'{user}@localhost'], msg)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('up')
    p.add_argument('env_file')
    p.add_argument('--lifetime', type=float, default=600)
    p = sub.add_parser('inject')
    p.add_argument('port')
    p.add_argument('user')
    p.add_argument('subject')
    a = ap.parse_args()
    if a.cmd == 'up':
        up(a.env_file, a.lifetime)
    else:
        inject(a.port, a.user, a.subject)


if __name__ == '__main__':
    main()
