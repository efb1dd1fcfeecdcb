"""A webhook receiver for integration tests: records every POST (headers, raw body, arrival time,
what it answered) and checks the HMAC-SHA256 signature. It can answer an error status (e.g. 503)
or be stopped and started again on the same port to look like an application that is down.

Standard library only; binds 127.0.0.1 only.
"""

import hashlib
import hmac
import http.server
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

from harness.ports import free_port

HOST = '127.0.0.1'
SIGNATURE_HEADER = 'x-email-listener-signature'
EVENT_ID_HEADER = 'x-email-listener-event-id'
ATTEMPT_HEADER = 'x-email-listener-attempt'


def sign(secret, body):
    return 'sha256=' + hmac.new(secret.encode('utf-8'), body, hashlib.sha256).hexdigest()


@dataclass
class Delivery:
    path: str
    headers: dict          # lower-case names
    body: bytes
    arrived: float         # time.monotonic()
    arrived_wall: float    # time.time()
    status: int            # what the receiver answered
    signature_ok: bool
    json: object = None
    extra: dict = field(default_factory=dict)

    @property
    def event_id(self):
        return self.headers.get(EVENT_ID_HEADER)

    @property
    def type(self):
        return self.json.get('type') if isinstance(self.json, dict) else None

    @property
    def data(self):
        return (self.json or {}).get('data') or {}

    @property
    def attempt(self):
        try:
            return int(self.headers.get(ATTEMPT_HEADER, '0'))
        except ValueError:
            return 0

    @property
    def accepted(self):
        return 200 <= self.status < 300


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'  # keep-alive, as a real application server would
    timeout = 30

    def setup(self):
        super().setup()
        self.server.receiver._track(self.connection, add=True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.receiver._track(self.connection, add=False)

    def log_message(self, format, *args):  # noqa: A002  quiet
        pass

    def _read_body(self):
        if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
            chunks = []
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b';')[0].strip() or b'0', 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b'\r\n', b'\n', b''):
                        pass
                    return b''.join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get('Content-Length', '0') or 0)
        return self.rfile.read(length) if length else b''

    def do_POST(self):  # noqa: N802
        receiver = self.server.receiver
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        status = receiver.status
        sig = headers.get(SIGNATURE_HEADER, '')
        secret = receiver.secret_for(self.path)
        sig_ok = secret is not None and hmac.compare_digest(sig, sign(secret, body))
        try:
            parsed = json.loads(body.decode('utf-8'))
        except (UnicodeDecodeError, ValueError):
            parsed = None
        receiver._record(Delivery(self.path, headers, body, time.monotonic(), time.time(),
                                  status, sig_ok, parsed))
        payload = b'' if 200 <= status < 300 else b'{"error":"receiver says no"}'
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A client that drops a keep-alive connection (the service stopping) is not news.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, OSError)):
            return
        super().handle_error(request, client_address)


class WebhookReceiver:
    """Threaded receiver. secret: the HMAC key of the global webhook; secrets_by_path adds keys
    for per-mailbox webhooks (url path -> secret)."""

    def __init__(self, secret, port=0, status=200, on_delivery=None):
        self.secret = secret
        self.on_delivery = on_delivery  # called with each Delivery, on the handler's thread
        self.secrets_by_path = {}
        self.port = port
        self.status = status
        self._lock = threading.Condition()
        self._deliveries = []
        self._conns = set()
        self._server = None
        self._thread = None

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout=10):
        fresh = self.port == 0
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._server = _Server((HOST, free_port() if fresh else self.port), _Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02 if fresh else 0.1)  # fresh: another port; else: same port again
        self._server.receiver = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={'poll_interval': 0.05}, daemon=True,
                                        name=f'webhook-{self.port}')
        self._thread.start()
        return self

    def stop(self):
        """Closes the listening socket and every open connection: the port refuses connections."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)
        self._server = None

    def restart(self):
        self.stop()
        return self.start()

    @property
    def running(self):
        return self._server is not None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return f'http://{HOST}:{self.port}/hook'

    def url_for(self, path, secret):
        """A URL for a per-mailbox webhook with its own secret."""
        self.secrets_by_path[path] = secret
        return f'http://{HOST}:{self.port}{path}'

    def secret_for(self, path):
        return self.secrets_by_path.get(path, self.secret)

    def set_status(self, status):
        """200 accepts; anything else (503, 500, ...) refuses the following deliveries."""
        self.status = status

    # ---- records -----------------------------------------------------------------------------
    def _track(self, conn, add):
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _record(self, delivery):
        with self._lock:
            self._deliveries.append(delivery)
            self._lock.notify_all()
        if self.on_delivery is not None:
            self.on_delivery(delivery)

    def deliveries(self):
        with self._lock:
            return list(self._deliveries)

    def events(self, type=None, accepted_only=True, mailbox_id=None):  # noqa: A002
        out = []
        for d in self.deliveries():
            if accepted_only and not d.accepted:
                continue
            if type is not None and d.type != type:
                continue
            if mailbox_id is not None and (d.json or {}).get('mailbox_id') != mailbox_id:
                continue
            out.append(d)
        return out

    def messages(self, mailbox_id=None, accepted_only=True):
        return self.events('message.new', accepted_only, mailbox_id)

    def wait_for(self, predicate, timeout, what='webhook deliveries'):
        """Waits until predicate(list of deliveries) is true; returns its value. Bounded."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                value = predicate(list(self._deliveries))
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f'timed out after {timeout}s waiting for {what}; got '
                                       f'{len(self._deliveries)} deliveries: {self.summary()}')
                self._lock.wait(min(left, 0.5))

    def wait_messages(self, count, timeout, mailbox_id=None):
        """Waits until count message.new events were accepted (duplicates count once per event id)."""
        def enough(_):
            ids = {d.event_id for d in self.messages(mailbox_id)}
            return len(ids) >= count
        self.wait_for(enough, timeout, f'{count} message.new events')
        return self.unique_messages(mailbox_id)

    def unique_messages(self, mailbox_id=None):
        """Accepted message.new events, first acceptance of each event id, in arrival order."""
        seen, out = set(), []
        for d in self.messages(mailbox_id):
            if d.event_id not in seen:
                seen.add(d.event_id)
                out.append(d)
        return out

    def summary(self, limit=30):
        rows = []
        for d in self.deliveries()[-limit:]:
            data = d.data
            rows.append(f'[{d.status} {d.type} uid={data.get("uid")} subj={data.get("subject")!r} '
                        f'state={data.get("state")} att={d.attempt}]')
        return ' '.join(rows)
