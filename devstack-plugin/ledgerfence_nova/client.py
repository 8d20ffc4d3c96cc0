"""A small client for filterd's Nova webhook, on the standard library only.

The client does not know Nova: it posts a prepared body and checks that the
answer is one Nova may act on. Any doubt is an error; the caller decides
whether an error removes every host (fail closed) or none (fail open).

It asks filterd's URLs in their order, on persistent connections (one idle
pool per URL), and goes on to the next URL only when the previous one could
not be reached: no connection (refused, reset, no TCP or TLS handshake in
time, a peer that hung up in the handshake), or a connection that broke
before any byte of an answer. An HTTP answer, a timeout after the request
was sent and a TLS failure (a certificate that does not verify, a refused
client certificate) are final.

HTTP/1.1 is spoken directly on the socket: one write for the request, the
answer read with Content-Length or chunked, as filterd (or a proxy in front
of it) sends it. The standard library's http.client parses headers through
the email package and writes the body apart from the headers, which took
more time than filterd's decision.
"""

import json
import os
import socket
import ssl
import time
import urllib.parse

DECISION_HEADER = 'X-Ledgerfence-Decision'

# An answer for 100,000 hosts is well below this; more is not filterd.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
_CHUNK = 64 * 1024

# Idle connections kept per URL, and for how long. filterd closes a
# connection idle for 120 s; load balancers often sooner.
MAX_IDLE = 8
IDLE_SECONDS = 30.0


class FilterdError(Exception):
    """filterd could not be asked, or its answer cannot be trusted.

    ``kind`` is one of the KIND_* constants, fit for a log field.
    """

    KIND_CONFIG = 'config'
    KIND_TIMEOUT = 'timeout'
    KIND_UNREACHABLE = 'unreachable'
    KIND_TLS = 'tls'
    KIND_STATUS = 'status'
    KIND_INVALID = 'invalid_answer'
    KIND_INTERNAL = 'internal'

    def __init__(self, kind, message, decision_id=None):
        super().__init__(message)
        self.kind = kind
        self.decision_id = decision_id


class Answer(object):
    """filterd's verdict: the host names it keeps, in its order; the URL
    that answered, and why each URL before it was passed over."""

    def __init__(self, hosts, decision_id, elapsed, url, skipped=()):
        self.hosts = hosts
        self.decision_id = decision_id
        self.elapsed = elapsed
        self.url = url
        self.skipped = list(skipped)


class _Unreachable(Exception):
    """This URL could not be reached; the next one may be."""


class _Broken(Exception):
    """An answer that broke off or is not HTTP."""


class _Endpoint(object):
    """One filterd URL, its request head, and its idle connections."""

    def __init__(self, url, webhook_path, ssl_context, headers):
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if (parts.scheme not in ('http', 'https') or not parts.hostname or
                port == -1):
            raise FilterdError(FilterdError.KIND_CONFIG,
                               'filterd url must be http(s)://host[:port]'
                               '/path, not %r' % (url,))
        self.url = url
        self.https = parts.scheme == 'https'
        self.host = parts.hostname
        self.port = port or (443 if self.https else 80)
        path = parts.path if parts.path not in ('', '/') else webhook_path
        path += '?' + parts.query if parts.query else ''
        netloc = parts.netloc.rpartition('@')[2]  # no user:password
        head = ['POST %s HTTP/1.1' % path, 'Host: ' + netloc]
        head += ['%s: %s' % kv for kv in headers]
        self.head = ('\r\n'.join(head) + '\r\nContent-Length: ').encode(
            'latin-1')
        self.ssl_context = ssl_context
        self.idle = []  # (socket, last used), the newest last
        self.pid = os.getpid()

    def connect(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.https:  # the handshake, within the same timeout
                sock = self.ssl_context.wrap_socket(
                    sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        return sock

    def take(self, now):
        """An idle connection, or None."""
        if self.pid != os.getpid():  # a forked worker: not its sockets
            self.idle = []
            self.pid = os.getpid()
        while self.idle:
            sock, used = self.idle.pop()
            if now - used < IDLE_SECONDS:
                return sock
            sock.close()
        return None

    def give_back(self, sock, now):
        if len(self.idle) < MAX_IDLE and self.pid == os.getpid():
            self.idle.append((sock, now))
        else:
            sock.close()

    def close(self):
        while self.idle:
            self.idle.pop()[0].close()


class Client(object):
    """Posts webhook bodies to filterd, trying its URLs in order."""

    def __init__(self, urls, timeout, token=None, ca_file=None,
                 cert_file=None, key_file=None, connect_timeout=None,
                 webhook_path='/'):
        if isinstance(urls, str):
            urls = [urls]
        urls = [u for u in (urls or ()) if u]
        if not urls:
            raise FilterdError(FilterdError.KIND_CONFIG,
                               'no filterd url configured')
        self.timeout = float(timeout)
        self.connect_timeout = min(float(connect_timeout or timeout),
                                   self.timeout)
        ssl_context = None
        if any(urllib.parse.urlsplit(u).scheme == 'https' for u in urls):
            ssl_context = _ssl_context(ca_file, cert_file, key_file)
        elif cert_file or key_file:
            raise FilterdError(FilterdError.KIND_CONFIG,
                               'cert_file and key_file need https urls')
        headers = [('Content-Type', 'application/json'),
                   ('Accept', 'application/json')]
        if token:
            if not token.isprintable():
                raise FilterdError(FilterdError.KIND_CONFIG,
                                   'token has a control character')
            headers.append(('Authorization', 'Bearer ' + token))
        self.endpoints = [_Endpoint(u, webhook_path, ssl_context, headers)
                          for u in urls]

    def close(self):
        for e in self.endpoints:
            e.close()

    def post(self, data, asked):
        """Post ``data`` (a JSON body, bytes) and return the Answer.

        ``asked`` holds the host names in the body (``name in asked``); an
        answer naming any other host is invalid. The whole exchange, every
        URL tried included, must finish within the client's timeout.
        """
        start = time.monotonic()
        deadline = start + self.timeout
        failures = []
        for endpoint in self.endpoints:
            request = b'%s%d\r\n\r\n%s' % (endpoint.head, len(data), data)
            try:
                status, decision_id, raw = self._exchange(
                    endpoint, request, deadline)
            except _Unreachable as e:
                failures.append('%s: %s' % (endpoint.url, e))
                if time.monotonic() >= deadline:
                    break
                continue
            elapsed = time.monotonic() - start
            if not 200 <= status < 300:
                raise FilterdError(
                    FilterdError.KIND_STATUS,
                    '%s answered HTTP %d: %s'
                    % (endpoint.url, status, _snippet(raw)), decision_id)
            hosts = parse_answer(raw, asked, decision_id)
            return Answer(hosts, decision_id, elapsed, endpoint.url,
                          failures)
        if len(failures) < len(self.endpoints):
            raise FilterdError(FilterdError.KIND_TIMEOUT,
                               'no answer within %.3gs: %s'
                               % (self.timeout, '; '.join(failures)))
        raise FilterdError(FilterdError.KIND_UNREACHABLE,
                           'cannot reach filterd: %s' % '; '.join(failures))

    def _exchange(self, endpoint, request, deadline):
        """(status, decision id, body) of one request to endpoint.

        Raises _Unreachable when the next URL may be tried, FilterdError
        when the failure is final.
        """
        sock = endpoint.take(time.monotonic())
        if sock is not None:
            try:
                return self._request(endpoint, sock, request, deadline)
            except _Unreachable:
                # The server closed the idle connection: ask again on a new
                # one, which tells whether filterd is reachable.
                pass
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Unreachable('no time left to connect')
        timeout = min(self.connect_timeout, remaining)
        try:
            sock = endpoint.connect(timeout)
        except ssl.SSLCertVerificationError as e:
            raise FilterdError(FilterdError.KIND_TLS,
                               'TLS with %s failed: %s' % (endpoint.url, e))
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as e:
            # A peer that hung up in the handshake.
            raise _Unreachable('TLS handshake: %s' % (e,))
        except ssl.SSLError as e:
            raise FilterdError(FilterdError.KIND_TLS,
                               'TLS with %s failed: %s' % (endpoint.url, e))
        except socket.timeout:
            raise _Unreachable('no connection within %.3gs' % timeout)
        except OSError as e:
            raise _Unreachable(e or type(e).__name__)
        return self._request(endpoint, sock, request, deadline)

    def _request(self, endpoint, sock, request, deadline):
        reader = _Reader(sock, deadline)
        try:
            _set_timeout(sock, deadline)
            sock.sendall(request)
            status, headers, raw, keep = reader.answer()
        except socket.timeout as e:
            sock.close()
            raise FilterdError(FilterdError.KIND_TIMEOUT,
                               'no answer from %s within %.3gs: %s'
                               % (endpoint.url, self.timeout,
                                  e or 'timed out'))
        except ssl.SSLError as e:
            sock.close()
            if isinstance(e, (ssl.SSLEOFError, ssl.SSLZeroReturnError)) \
                    and not reader.got:
                raise _Unreachable('connection closed: %s' % (e,))
            raise FilterdError(FilterdError.KIND_TLS,
                               'TLS with %s failed: %s' % (endpoint.url, e))
        except (ConnectionError, EOFError) as e:
            sock.close()
            if reader.got:
                raise FilterdError(FilterdError.KIND_UNREACHABLE,
                                   '%s broke off its answer: %s'
                                   % (endpoint.url, e or type(e).__name__))
            raise _Unreachable('connection lost: %s'
                               % (e or type(e).__name__))
        except (OSError, _Broken) as e:
            sock.close()
            raise FilterdError(FilterdError.KIND_UNREACHABLE,
                               '%s: %s' % (endpoint.url,
                                           e or type(e).__name__))
        if keep:
            endpoint.give_back(sock, time.monotonic())
        else:
            sock.close()
        return status, headers.get(DECISION_HEADER.lower()), raw


class _Reader(object):
    """Reads one HTTP/1.1 answer from a socket, each read within the
    deadline. ``got`` tells whether any byte of it arrived."""

    def __init__(self, sock, deadline):
        self.sock = sock
        self.deadline = deadline
        self.buf = bytearray()
        self.got = False

    def _more(self):
        _set_timeout(self.sock, self.deadline)
        # At most one read of the socket at a time, so that a server that
        # sends a byte at a time cannot stretch a read past the deadline.
        chunk = self.sock.recv(_CHUNK)
        if not chunk:
            raise EOFError('connection closed')
        self.got = True
        self.buf += chunk

    def _until(self, mark, limit):
        """The bytes before mark (consumed with it)."""
        start = 0
        while True:
            i = self.buf.find(mark, start)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + len(mark)]
                return out
            if len(self.buf) > limit:
                raise _Broken('answer head larger than %d bytes' % limit)
            start = max(0, len(self.buf) - len(mark) + 1)
            self._more()

    def _exactly(self, n):
        while len(self.buf) < n:
            self._more()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def answer(self):
        """(status, {lower-case header: value}, body, connection reusable).
        """
        while True:
            head = self._until(b'\r\n\r\n', MAX_HEADER_BYTES)
            lines = head.decode('latin-1').split('\r\n')
            parts = lines[0].split(' ', 2)
            if (len(parts) < 2 or not parts[0].startswith('HTTP/1.') or
                    len(parts[1]) != 3 or not parts[1].isdigit()):
                raise _Broken('not an HTTP answer: %r' % lines[0][:80])
            status = int(parts[1])
            if status >= 200:
                break  # 1xx: an interim answer, the real one follows
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(':')
            if not sep or not name or name != name.strip():
                raise _Broken('malformed header line %r' % line[:80])
            headers[name.lower()] = value.strip()
        keep = (parts[0] == 'HTTP/1.1' and
                'close' not in headers.get('connection', '').lower())
        coding = headers.get('transfer-encoding')
        length = headers.get('content-length')
        if status in (204, 304):
            body = b''
        elif coding is not None:
            if coding.lower() != 'chunked':
                raise _Broken('transfer-encoding %r' % coding)
            body = self._chunked()
        elif length is not None:
            if not length.isdigit() or int(length) > MAX_ANSWER_BYTES:
                raise _Broken('content-length %r' % length[:40])
            body = self._exactly(int(length))
        else:  # the body ends with the connection
            keep = False
            while True:
                if len(self.buf) > MAX_ANSWER_BYTES:
                    raise _Broken('answer larger than %d bytes'
                                  % MAX_ANSWER_BYTES)
                try:
                    self._more()
                except EOFError:
                    break
            body = bytes(self.buf)
            self.buf.clear()
        if self.buf:  # bytes past the answer: not a connection to reuse
            keep = False
        return status, headers, body, keep

    def _chunked(self):
        chunks = []
        size = 0
        while True:
            line = self._until(b'\r\n', 1024).split(b';', 1)[0].strip()
            try:
                n = int(line, 16)
            except ValueError:
                raise _Broken('chunk size %r' % line[:40])
            if n == 0:
                while self._until(b'\r\n', MAX_HEADER_BYTES):
                    pass  # trailer fields, up to the empty line
                return b''.join(chunks)
            size += n
            if size > MAX_ANSWER_BYTES:
                raise _Broken('answer larger than %d bytes'
                              % MAX_ANSWER_BYTES)
            chunks.append(self._exactly(n))
            if self._exactly(2) != b'\r\n':
                raise _Broken('chunk not followed by CRLF')


def _ssl_context(ca_file, cert_file, key_file):
    if key_file and not cert_file:
        raise FilterdError(FilterdError.KIND_CONFIG,
                           'key_file is set without cert_file')
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise FilterdError(FilterdError.KIND_CONFIG,
                           'cannot load ca_file %s: %s' % (ca_file, e))
    if cert_file:
        try:
            ctx.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as e:
            raise FilterdError(FilterdError.KIND_CONFIG,
                               'cannot load cert_file %s / key_file %s: %s'
                               % (cert_file, key_file, e))
    return ctx


def parse_answer(raw, asked, decision_id=None):
    """Return the host names of a webhook answer, or raise FilterdError.

    The answer must be a JSON object whose "hosts" is a list of host names
    (strings, or objects with a "host" string as some external schedulers
    send), each one asked about (``name in asked``) and none twice. Other
    keys are ignored.
    """
    def invalid(msg):
        return FilterdError(FilterdError.KIND_INVALID, msg, decision_id)

    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise invalid('answer is not JSON: %s' % e)
    if not isinstance(doc, dict) or not isinstance(doc.get('hosts'), list):
        raise invalid('answer has no "hosts" list')
    hosts = doc['hosts']
    # filterd's answer: names, each asked about, none twice. Checked without
    # a Python loop; anything else takes the loop below, which says what
    # is wrong.
    try:
        if all(map(asked.__contains__, hosts)) and \
                len(set(hosts)) == len(hosts):
            return hosts
    except TypeError:  # an object in the list
        pass
    names = []
    seen = set()
    for item in hosts:
        name = item.get('host') if isinstance(item, dict) else item
        if not isinstance(name, str):
            raise invalid('answer lists a host that is not a name: %r'
                          % (item,))
        if name not in asked:
            raise invalid('answer lists host %r, which was not asked about'
                          % name)
        if name in seen:
            raise invalid('answer lists host %r twice' % name)
        seen.add(name)
        names.append(name)
    return names


def _set_timeout(sock, deadline):
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout('deadline passed')
    sock.settimeout(remaining)


def _snippet(raw, limit=200):
    text = raw[:limit].decode('utf-8', 'replace').strip()
    return text + ('...' if len(raw) > limit else '')
