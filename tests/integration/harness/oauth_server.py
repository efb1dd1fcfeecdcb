"""A fake OAuth2 provider for integration tests, on 127.0.0.1 (threaded http.server, stdlib only).

One server plays three parts:
  POST /token       RFC 6749 token endpoint: grant_type=refresh_token (form body), client
                    authentication by client_id/client_secret in the form or HTTP Basic.
                    A known refresh token -> {"access_token", "token_type", "expires_in"
                    [, "refresh_token" when rotate_refresh]}; an unknown or revoked one ->
                    400 {"error": "invalid_grant"}; wrong client -> 401 {"error": "invalid_client"}.
  /introspect       RFC 7662 token introspection, as Dovecot's oauth2 passdb asks it: POST with a
                    form `token=...` (introspection_mode = post), GET ?token=... (mode get; the
                    token may also simply be appended to the URL) or a Bearer header (mode auth).
                    Answers {"active": true, "username": "user1", "email": ..., "exp": ...} or
                    {"active": false}.
  POST /app-token   an application's refresh_url: JSON {"mailbox_id", "email"} ->
                    {"access_token", "expires_in"} for a mapping set with app_token_for(); every
                    request is recorded with its X-Email-Listener-Signature header.

Tokens live only in memory; expire(token) / revoke_all_for(user) invalidate them at once (the
next introspection says inactive, so the next login fails: the test Dovecot caches no auth
results). Every call is counted (counts['/token'], refreshes, introspections) and recorded.
"""

import base64
import hashlib
import hmac
import http.server
import json
import secrets
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from harness.ports import free_port

HOST = '127.0.0.1'
SIGNATURE_HEADER = 'x-email-listener-signature'


@dataclass
class Call:
    method: str
    path: str
    headers: dict      # lower-case names
    body: bytes
    status: int
    response: object   # the JSON answered
    at: float = field(default_factory=time.monotonic)

    @property
    def form(self):
        return dict(urllib.parse.parse_qsl(self.body.decode('utf-8', errors='replace')))

    @property
    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def signature(self):
        return self.headers.get(SIGNATURE_HEADER)


@dataclass
class _Access:
    user: str
    expires: float     # time.time()
    active: bool = True


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    timeout = 30

    def setup(self):
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    def log_message(self, format, *args):  # noqa: A002  quiet
        pass

    def _body(self):
        n = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(n) if n > 0 else b''

    def _answer(self, status, obj, body_in, extra_headers=()):
        data = json.dumps(obj).encode()
        # Recorded before answering: a client that got the answer always finds the call.
        self.server.owner._record(Call(self.command, self.path,
                                       {k.lower(): v for k, v in self.headers.items()},
                                       body_in, status, obj))
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.send_header('Cache-Control', 'no-store')
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        self._dispatch(b'')

    def do_POST(self):  # noqa: N802
        self._dispatch(self._body())

    def _dispatch(self, body):
        owner = self.server.owner
        path = urllib.parse.urlsplit(self.path).path
        try:
            if path.startswith('/introspect'):
                status, obj = owner._introspect(self.command, self.path, self.headers, body)
            elif path == '/token' and self.command == 'POST':
                status, obj = owner._token(self.headers, body)
            elif path == '/app-token' and self.command == 'POST':
                status, obj = owner._app_token(self.headers, body)
            else:
                status, obj = 404, {'error': 'not_found'}
        except Exception as exc:  # pylint: disable=broad-except
            status, obj = 500, {'error': 'server_error', 'error_description': repr(exc)}
        self._answer(status, obj, body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], OSError):  # a client gone, or stop() closing it: quiet
            return
        super().handle_error(request, client_address)


class OAuthServer:
    """Use as a context manager or start()/stop().

    client_id/client_secret: what /token requires (client_secret=None: a public client).
    access_ttl: expires_in of tokens from /token and /app-token (seconds).
    rotate_refresh: /token also returns a new refresh token (the old one stops working).
    app_secret: when set, /app-token checks X-Email-Listener-Signature (sha256=HMAC of the body)
    and answers 401 on a mismatch; the header is recorded either way.
    """

    def __init__(self, client_id='el-test-client', client_secret='el-test-secret',
                 access_ttl=3600, rotate_refresh=False, app_secret=None):
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_ttl = access_ttl
        self.rotate_refresh = rotate_refresh
        self.app_secret = app_secret
        self.port = None
        self._httpd = None
        self._thread = None
        self._lock = threading.Lock()
        self._access = {}      # token -> _Access
        self._refresh = {}     # refresh token -> user
        self._app_map = {}     # mailbox_id or email -> (user, ttl or None)
        self._failures = []    # [(path, status, obj)] answered before the real handling
        self._conns = set()
        self.calls = []        # every Call, in order
        self.counts = {}       # path (no query) -> number of requests

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self):
        """Starts serving (again on the same port after a stop())."""
        if self._httpd is not None:
            return self
        last = None
        for _ in range(20):
            port = self.port or free_port()
            try:
                self._httpd = _Server((HOST, port), _Handler)
                break
            except OSError as exc:
                last = exc
                if self.port:
                    time.sleep(0.25)
        else:
            raise RuntimeError(f'oauth server: cannot listen on {self.port or "a free port"} '
                               f'({last!r})')
        self._httpd.owner = self
        self.port = port
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={'poll_interval': 0.1}, daemon=True,
                                        name=f'oauth-server-{port}')
        self._thread.start()
        return self

    def stop(self):
        """Closes the listening socket and every open (keep-alive) connection: the port refuses
        connections until start()."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)
        self._httpd = None

    def _track(self, conn, add):
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return f'http://{HOST}:{self.port}'

    @property
    def token_url(self):
        return self.url + '/token'

    @property
    def introspect_url(self):
        return self.url + '/introspect'

    @property
    def app_token_url(self):
        return self.url + '/app-token'

    # ---- tokens ------------------------------------------------------------------------------
    def issue(self, user, ttl_seconds=None):
        """A new access token for user, valid for ttl_seconds (default access_ttl)."""
        ttl = self.access_ttl if ttl_seconds is None else ttl_seconds
        token = 'at-' + secrets.token_urlsafe(24)
        with self._lock:
            self._access[token] = _Access(user, time.time() + ttl)
        return token

    def issue_refresh(self, user):
        """A refresh token that /token exchanges for access tokens of user."""
        token = 'rt-' + secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[token] = user
        return token

    def expire(self, token):
        """Makes an access token (or a refresh token) invalid from now on."""
        with self._lock:
            if token in self._access:
                self._access[token].active = False
            self._refresh.pop(token, None)

    def revoke_all_for(self, user, refresh=True):
        """Every access token of user inactive; with refresh, its refresh tokens unknown too."""
        with self._lock:
            for a in self._access.values():
                if a.user == user:
                    a.active = False
            if refresh:
                for t in [t for t, u in self._refresh.items() if u == user]:
                    del self._refresh[t]

    def is_active(self, token):
        with self._lock:
            a = self._access.get(token)
            return bool(a and a.active and a.expires > time.time())

    def tokens_for(self, user):
        """Access tokens issued for user (oldest first), valid or not."""
        with self._lock:
            return [t for t, a in self._access.items() if a.user == user]

    def app_token_for(self, user, mailbox_id=None, email=None, ttl_seconds=None):
        """/app-token answers requests naming this mailbox_id (or, without one, this email) with
        a fresh access token for user."""
        if mailbox_id is None and email is None:
            raise ValueError('give mailbox_id or email')
        with self._lock:
            for key in (mailbox_id, email):
                if key is not None:
                    self._app_map[key] = (user, ttl_seconds)

    def fail_next(self, path, count=1, status=503, obj=None):
        """The next count requests to path ('/token', '/app-token', '/introspect') get status."""
        obj = obj if obj is not None else {'error': 'temporarily_unavailable'}
        with self._lock:
            self._failures.extend([(path, status, obj)] * count)

    # ---- what happened -----------------------------------------------------------------------
    def _record(self, call):
        with self._lock:
            self.calls.append(call)
            p = urllib.parse.urlsplit(call.path).path
            if p.startswith('/introspect'):
                p = '/introspect'
            self.counts[p] = self.counts.get(p, 0) + 1

    def calls_to(self, path):
        with self._lock:
            return [c for c in self.calls if urllib.parse.urlsplit(c.path).path.startswith(path)]

    @property
    def refreshes(self):
        """Successful refresh grants so far."""
        return sum(1 for c in self.calls_to('/token') if c.status == 200)

    @property
    def introspections(self):
        return self.counts.get('/introspect', 0)

    @property
    def app_requests(self):
        return self.calls_to('/app-token')

    # ---- handlers (called on server threads) -------------------------------------------------
    def _take_failure(self, path):
        with self._lock:
            for i, (p, status, obj) in enumerate(self._failures):
                if p == path:
                    del self._failures[i]
                    return status, obj
        return None

    def _introspect(self, method, raw_path, headers, body):
        fail = self._take_failure('/introspect')
        if fail:
            return fail
        parts = urllib.parse.urlsplit(raw_path)
        token = None
        if method == 'POST':
            token = dict(urllib.parse.parse_qsl(body.decode('utf-8', errors='replace'))).get('token')
        if not token:
            q = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
            token = q.get('token') or q.get('access_token')
        if not token and parts.path.startswith('/introspect/'):
            token = urllib.parse.unquote(parts.path[len('/introspect/'):])
        auth = headers.get('Authorization') or ''
        if not token and auth.lower().startswith('bearer '):
            token = auth[7:].strip()
        with self._lock:
            a = self._access.get(token or '')
            if not a or not a.active or a.expires <= time.time():
                return 200, {'active': False}
            return 200, {'active': True, 'username': a.user, 'email': f'{a.user}@localhost',
                         'sub': a.user, 'scope': 'mail', 'client_id': self.client_id,
                         'token_type': 'Bearer', 'exp': int(a.expires)}

    def _token(self, headers, body):
        fail = self._take_failure('/token')
        if fail:
            return fail
        form = dict(urllib.parse.parse_qsl(body.decode('utf-8', errors='replace')))
        cid, csecret = form.get('client_id'), form.get('client_secret')
        auth = headers.get('Authorization') or ''
        if auth.lower().startswith('basic '):
            try:
                u, _, p = base64.b64decode(auth[6:]).decode().partition(':')
                cid, csecret = urllib.parse.unquote_plus(u), urllib.parse.unquote_plus(p)
            except ValueError:
                return 401, {'error': 'invalid_client'}
        if cid != self.client_id or (self.client_secret is not None
                                     and csecret != self.client_secret):
            return 401, {'error': 'invalid_client'}
        if form.get('grant_type') != 'refresh_token':
            return 400, {'error': 'unsupported_grant_type'}
        rt = form.get('refresh_token')
        if not rt:
            return 400, {'error': 'invalid_request'}
        with self._lock:
            user = self._refresh.get(rt)
        if user is None:
            return 400, {'error': 'invalid_grant', 'error_description': 'unknown refresh token'}
        out = {'access_token': self.issue(user), 'token_type': 'Bearer',
               'expires_in': int(self.access_ttl)}
        if self.rotate_refresh:
            with self._lock:
                self._refresh.pop(rt, None)
            out['refresh_token'] = self.issue_refresh(user)
        return 200, out

    def _app_token(self, headers, body):
        fail = self._take_failure('/app-token')
        if fail:
            return fail
        if self.app_secret is not None:
            want = 'sha256=' + hmac.new(self.app_secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(want, headers.get('X-Email-Listener-Signature') or ''):
                return 401, {'error': 'bad signature'}
        try:
            req = json.loads(body)
        except ValueError:
            return 400, {'error': 'invalid json'}
        if not isinstance(req, dict):
            return 400, {'error': 'invalid json'}
        with self._lock:
            hit = self._app_map.get(req.get('mailbox_id')) or self._app_map.get(req.get('email'))
        if hit is None:
            return 404, {'error': 'unknown mailbox'}
        user, ttl = hit
        ttl = self.access_ttl if ttl is None else ttl
        return 200, {'access_token': self.issue(user, ttl), 'expires_in': int(ttl)}


def xoauth2_string(user, token):
    """The SASL XOAUTH2 initial response (not base64-encoded)."""
    return f'user={user}\x01auth=Bearer {token}\x01\x01'
