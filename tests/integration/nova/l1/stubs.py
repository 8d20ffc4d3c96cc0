"""HTTP servers for the filter's failure modes, and a recording proxy.

A real filterd is well behaved; these play a broken or unreachable one, so
that the tests can see the filter fail closed (or open when configured).
"""

import http.client
import http.server
import json
import socket
import struct
import threading
import time


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # The filter hangs up on a server that is too slow: expected here.
        pass


class _Base(object):
    def __init__(self, handler):
        self.requests = []
        self.lock = threading.Lock()
        self.server = _Server(('127.0.0.1', 0), handler)
        self.server.owner = self
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self):
        return 'http://127.0.0.1:%d/scheduler/nova/external' % (
            self.server.server_address[1])

    def record(self, path, headers, body, raw=None, client=None):
        with self.lock:
            self.requests.append({'path': path, 'headers': headers,
                                  'body': body, 'raw': raw,
                                  'client': client})


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def _body(self):
        raw = self.rfile.read(int(self.headers.get('Content-Length') or 0))
        return json.loads(raw)

    def _send(self, status, raw, extra=None):
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(raw)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)


class Misbehaving(_Base):
    """Answers every webhook call in one broken way.

    ``answer(body)`` returns (status, raw bytes); ``delay`` seconds pass
    before the status line; ``drip`` sends the body one byte per ``drip``
    seconds.
    """

    def __init__(self, answer, delay=0.0, drip=0.0):
        self.answer = answer
        self.delay = delay
        self.drip = drip
        super().__init__(_MisbehavingHandler)


class _MisbehavingHandler(_Handler):
    def do_POST(self):
        owner = self.server.owner
        body = self._body()
        owner.record(self.path, dict(self.headers), body)
        time.sleep(owner.delay)
        status, raw = owner.answer(body)
        if not owner.drip:
            return self._send(status, raw)
        self.send_response(status)
        self.send_header('Content-Length', str(len(raw)))
        self.end_headers()
        try:
            for b in raw:
                self.wfile.write(bytes([b]))
                self.wfile.flush()
                time.sleep(owner.drip)
        except OSError:
            pass


class RecordingProxy(_Base):
    """Forwards webhook calls to a real filterd and keeps what it saw: each
    request's path, headers, decoded body, raw bytes and the client's
    (address, port), which tells connections apart."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.responses = []
        super().__init__(_ProxyHandler)


class _ProxyHandler(_Handler):
    def do_POST(self):
        owner = self.server.owner
        raw = self.rfile.read(int(self.headers.get('Content-Length') or 0))
        owner.record(self.path, dict(self.headers), json.loads(raw), raw,
                     self.client_address)
        conn = http.client.HTTPConnection('127.0.0.1', owner.target_port,
                                          timeout=30)
        fwd = {k: v for k, v in self.headers.items()
               if k.lower() in ('content-type', 'authorization', 'accept')}
        conn.request('POST', self.path, body=raw, headers=fwd)
        resp = conn.getresponse()
        out = resp.read()
        extra = {k: v for k, v in resp.getheaders()
                 if k.lower().startswith('x-ledgerfence')}
        conn.close()
        with owner.lock:
            owner.responses.append((resp.status, extra, out))
        self._send(resp.status, out, extra)


class HangUp(object):
    """Accepts TCP connections and closes each at once, before a byte is
    read or written: a peer that dies in the TLS handshake, or resets an
    HTTP request."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(16)
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            # SO_LINGER 0: the close sends a reset.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack('ii', 1, 0))
            conn.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self.sock.close()

    def url(self, scheme='http'):
        return '%s://127.0.0.1:%d/scheduler/nova/external' % (
            scheme, self.sock.getsockname()[1])
