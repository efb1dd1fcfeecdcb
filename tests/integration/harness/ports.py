"""Free TCP ports on 127.0.0.1 for servers the tests start.

Ports come from below the kernel's ephemeral range (32768-60999 by default), picked at random:
a port that bind(0) returned and we released sits in the range the kernel hands out next, to
other tests running in parallel and to outgoing connections, so a server restarted on "its"
port could find it taken. Callers still retry when a bind fails.
"""

import random
import socket
import threading

HOST = '127.0.0.1'
LOW, HIGH = 20000, 32000
_given = set()
_lock = threading.Lock()


def _ephemeral_range():
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range', encoding='ascii') as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port():
    lo, hi = LOW, HIGH
    eph_lo, eph_hi = _ephemeral_range()
    if not (hi <= eph_lo or lo > eph_hi):  # a custom ephemeral range overlapping ours
        lo, hi = 1024, max(1025, eph_lo)
    rng = random.SystemRandom()
    with _lock:
        for _ in range(200):
            port = rng.randrange(lo, hi)
            if port not in _given and _bindable(port):
                _given.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # last resort
        s.bind((HOST, 0))
        return s.getsockname()[1]
