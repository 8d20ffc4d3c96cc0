"""A small client for filterd's Nova webhook, on the standard library only.

The client does not know Nova: it posts a prepared body and checks that the
answer is one Nova may act on. Any doubt is an error; the caller decides
whether an error removes every host (fail closed) or none (fail open).

It asks filterd's URLs in their order, on persistent connections (one idle
pool per URL), and goes on to the next URL only when the previous one could
not be reached: nothing was sent to a live filterd, or its connection broke
before any answer. An HTTP answer, a timeout after the request was sent and
a TLS failure (a certificate that does not verify, a refused client
certificate) are final.
"""

import http.client
import json
import os
import socket
import ssl
import time
import urllib.parse

DECISION_HEADER = 'X-Ledgerfence-Decision'

# An answer for 100,000 hosts is well below this; more is not filterd.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
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
    """filterd's verdict: the host names it keeps, in its order."""

    def __init__(self, hosts, decision_id, elapsed, url):
        self.hosts = hosts
        self.decision_id = decision_id
        self.elapsed = elapsed
        self.url = url


class _Unreachable(Exception):
    """This URL could not be reached; the next one may be."""


class _Endpoint(object):
    """One filterd URL and its idle connections."""

    def __init__(self, url, webhook_path, ssl_context):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            raise FilterdError(FilterdError.KIND_CONFIG,
                               'filterd url must be http(s)://host[:port]'
                               '/path, not %r' % (url,))
        self.url = url
        self.https = parts.scheme == 'https'
        self.host = parts.hostname
        self.port = parts.port
        path = parts.path if parts.path not in ('', '/') else webhook_path
        self.path = path + ('?' + parts.query if parts.query else '')
        self.ssl_context = ssl_context
        self.idle = []  # (connection, last used), the newest last
        self.pid = os.getpid()

    def new(self, timeout):
        if self.https:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout,
                context=self.ssl_context)
        return http.client.HTTPConnection(self.host, self.port,
                                          timeout=timeout)

    def take(self, now):
        """An idle connection, or None."""
        if self.pid != os.getpid():  # a forked worker: not its sockets
            self.idle = []
            self.pid = os.getpid()
        while self.idle:
            conn, used = self.idle.pop()
            if now - used < IDLE_SECONDS:
                return conn
            conn.close()
        return None

    def give_back(self, conn, now):
        if len(self.idle) < MAX_IDLE and self.pid == os.getpid():
            self.idle.append((conn, now))
        else:
            conn.close()

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
        self.endpoints = [_Endpoint(u, webhook_path, ssl_context)
                          for u in urls]
        self.headers = {'Content-Type': 'application/json',
                        'Accept': 'application/json'}
        if token:
            self.headers['Authorization'] = 'Bearer ' + token

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
            try:
                status, decision_id, raw = self._exchange(
                    endpoint, data, deadline)
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
            return Answer(hosts, decision_id, elapsed, endpoint.url)
        if time.monotonic() >= deadline and len(failures) < len(
                self.endpoints):
            raise FilterdError(FilterdError.KIND_TIMEOUT,
                               'no answer within %.3gs: %s'
                               % (self.timeout, '; '.join(failures)))
        raise FilterdError(FilterdError.KIND_UNREACHABLE,
                           'cannot reach filterd: %s' % '; '.join(failures))

    def _exchange(self, endpoint, data, deadline):
        """(status, decision id, body) of one POST to endpoint.

        Raises _Unreachable when the next URL may be tried, FilterdError
        when the failure is final.
        """
        conn = endpoint.take(time.monotonic())
        if conn is not None:
            try:
                return self._request(endpoint, conn, data, deadline)
            except _Unreachable:
                # The server closed the idle connection: ask again on a new
                # one, which tells whether filterd is reachable.
                pass
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Unreachable('no time left to connect')
        conn = endpoint.new(min(self.connect_timeout, remaining))
        try:
            conn.connect()
        except ssl.SSLCertVerificationError as e:
            conn.close()
            raise FilterdError(FilterdError.KIND_TLS,
                               'TLS with %s failed: %s' % (endpoint.url, e))
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as e:
            conn.close()  # a peer that hung up in the handshake
            raise _Unreachable('TLS handshake: %s' % (e,))
        except ssl.SSLError as e:
            conn.close()
            raise FilterdError(FilterdError.KIND_TLS,
                               'TLS with %s failed: %s' % (endpoint.url, e))
        except socket.timeout:
            conn.close()
            raise _Unreachable('no connection within %.3gs'
                               % min(self.connect_timeout, remaining))
        except OSError as e:
            conn.close()
            raise _Unreachable(e or type(e).__name__)
        return self._request(endpoint, conn, data, deadline)

    def _request(self, endpoint, conn, data, deadline):
        answered = False
        try:
            _set_timeout(conn, deadline)
            conn.request('POST', endpoint.path, body=data,
                         headers=self.headers)
            _set_timeout(conn, deadline)
            resp = conn.getresponse()
            answered = True
            decision_id = resp.getheader(DECISION_HEADER)
            raw = _read_all(conn, resp, deadline)
        except socket.timeout as e:
            conn.close()
            raise FilterdError(FilterdError.KIND_TIMEOUT,
                               'no answer from %s within %.3gs: %s'
                               % (endpoint.url, self.timeout,
                                  e or 'timed out'))
        except ssl.SSLError as e:
            conn.close()
            if isinstance(e, (ssl.SSLEOFError, ssl.SSLZeroReturnError)) \
                    and not answered:
                raise _Unreachable('connection closed: %s' % (e,))
            raise FilterdError(FilterdError.KIND_TLS,
                               'TLS with %s failed: %s' % (endpoint.url, e))
        except (ConnectionError, http.client.RemoteDisconnected) as e:
            conn.close()
            if answered:
                raise FilterdError(FilterdError.KIND_UNREACHABLE,
                                   '%s broke off its answer: %s'
                                   % (endpoint.url, e or type(e).__name__))
            raise _Unreachable('connection lost: %s'
                               % (e or type(e).__name__))
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise FilterdError(FilterdError.KIND_UNREACHABLE,
                               '%s: %s' % (endpoint.url,
                                           e or type(e).__name__))
        if resp.will_close:
            conn.close()
        else:
            endpoint.give_back(conn, time.monotonic())
        return resp.status, decision_id, raw


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


def _set_timeout(conn, deadline):
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout('deadline passed')
    if conn.sock is not None:
        conn.sock.settimeout(remaining)


def _read_all(conn, resp, deadline):
    """The whole body of resp, which is then closed so that conn can carry
    the next request."""
    chunks = []
    size = 0
    while resp.length != 0:  # None: chunked, or up to the connection's end
        _set_timeout(conn, deadline)
        # read1: at most one read of the socket, so a server that sends a
        # byte at a time cannot stretch the call past the deadline.
        chunk = resp.read1(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise http.client.HTTPException('answer larger than %d bytes'
                                            % MAX_ANSWER_BYTES)
        chunks.append(chunk)
    if resp.length:
        raise http.client.IncompleteRead(b''.join(chunks), resp.length)
    resp.close()
    return b''.join(chunks)


def _snippet(raw, limit=200):
    text = raw[:limit].decode('utf-8', 'replace').strip()
    return text + ('...' if len(raw) > limit else '')
