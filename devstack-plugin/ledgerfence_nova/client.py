"""A small client for filterd's Nova webhook, on the standard library only.

The client does not know Nova: it posts a prepared body and checks that the
answer is one Nova may act on. Any doubt is an error; the caller decides
whether an error removes every host (fail closed) or none (fail open).
"""

import http.client
import json
import socket
import ssl
import time
import urllib.parse

DECISION_HEADER = 'X-Ledgerfence-Decision'

# An answer for 100,000 hosts is well below this; more is not filterd.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
_CHUNK = 64 * 1024


class FilterdError(Exception):
    """filterd could not be asked, or its answer cannot be trusted.

    ``kind`` is one of the KIND_* constants, fit for a log field.
    """

    KIND_CONFIG = 'config'
    KIND_TIMEOUT = 'timeout'
    KIND_UNREACHABLE = 'unreachable'
    KIND_STATUS = 'status'
    KIND_INVALID = 'invalid_answer'
    KIND_INTERNAL = 'internal'

    def __init__(self, kind, message, decision_id=None):
        super().__init__(message)
        self.kind = kind
        self.decision_id = decision_id


class Answer(object):
    """filterd's verdict: the host names it keeps, in its order."""

    def __init__(self, hosts, decision_id, elapsed):
        self.hosts = hosts
        self.decision_id = decision_id
        self.elapsed = elapsed


class Client(object):
    """Posts webhook bodies to one filterd URL."""

    def __init__(self, url, timeout, token=None, ca_file=None,
                 webhook_path='/'):
        if not url:
            raise FilterdError(FilterdError.KIND_CONFIG,
                               'no filterd url configured')
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            raise FilterdError(FilterdError.KIND_CONFIG,
                               'filterd url must be http(s)://host[:port]/path')
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        path = parts.path if parts.path not in ('', '/') else webhook_path
        self.path = path + ('?' + parts.query if parts.query else '')
        self.timeout = float(timeout)
        self.token = token
        self.ssl_context = None
        if self.scheme == 'https':
            try:
                self.ssl_context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as e:
                raise FilterdError(FilterdError.KIND_CONFIG,
                                   'cannot load ca_file %s: %s' % (ca_file, e))

    def _connection(self):
        if self.scheme == 'https':
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout,
                context=self.ssl_context)
        return http.client.HTTPConnection(self.host, self.port,
                                          timeout=self.timeout)

    def post(self, body, asked):
        """Post ``body`` (a dict) and return the Answer.

        ``asked`` is the set of host names in the body; an answer naming any
        other host is invalid. The whole exchange must finish within the
        client's timeout.
        """
        # A primitive is a tree: no need to look for cycles.
        data = json.dumps(body, separators=(',', ':'), check_circular=False,
                          default=_json_default).encode('utf-8')
        headers = {'Content-Type': 'application/json',
                   'Accept': 'application/json',
                   'Connection': 'close'}
        if self.token:
            headers['Authorization'] = 'Bearer ' + self.token
        start = time.monotonic()
        deadline = start + self.timeout
        conn = self._connection()
        try:
            conn.connect()
            _set_timeout(conn, deadline)
            conn.request('POST', self.path, body=data, headers=headers)
            _set_timeout(conn, deadline)
            resp = conn.getresponse()
            decision_id = resp.getheader(DECISION_HEADER)
            raw = _read_all(conn, resp, deadline)
        except socket.timeout as e:
            raise FilterdError(FilterdError.KIND_TIMEOUT,
                               'no answer within %.3gs: %s'
                               % (self.timeout, e or 'timed out'))
        except ssl.SSLError as e:
            raise FilterdError(FilterdError.KIND_UNREACHABLE,
                               'TLS with filterd failed: %s' % e)
        except (OSError, http.client.HTTPException) as e:
            raise FilterdError(FilterdError.KIND_UNREACHABLE,
                               'cannot reach filterd: %s' % (e or type(e)))
        finally:
            conn.close()
        elapsed = time.monotonic() - start
        if not 200 <= resp.status < 300:
            raise FilterdError(
                FilterdError.KIND_STATUS,
                'filterd answered HTTP %d: %s'
                % (resp.status, _snippet(raw)), decision_id)
        hosts = parse_answer(raw, asked, decision_id)
        return Answer(hosts, decision_id, elapsed)


def parse_answer(raw, asked, decision_id=None):
    """Return the host names of a webhook answer, or raise FilterdError.

    The answer must be a JSON object whose "hosts" is a list of host names
    (strings, or objects with a "host" string as some external schedulers
    send), each one asked about and none twice. Other keys are ignored.
    """
    def invalid(msg):
        return FilterdError(FilterdError.KIND_INVALID, msg, decision_id)

    try:
        doc = json.loads(raw.decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as e:
        raise invalid('answer is not JSON: %s' % e)
    if not isinstance(doc, dict) or not isinstance(doc.get('hosts'), list):
        raise invalid('answer has no "hosts" list')
    hosts = []
    seen = set()
    for item in doc['hosts']:
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
        hosts.append(name)
    return hosts


def _set_timeout(conn, deadline):
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout('deadline passed')
    if conn.sock is not None:
        conn.sock.settimeout(remaining)


def _read_all(conn, resp, deadline):
    chunks = []
    size = 0
    while True:
        _set_timeout(conn, deadline)
        # read1: at most one read of the socket, so a server that sends a
        # byte at a time cannot stretch the call past the deadline.
        chunk = resp.read1(_CHUNK)
        if not chunk:
            return b''.join(chunks)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise http.client.HTTPException('answer larger than %d bytes'
                                            % MAX_ANSWER_BYTES)
        chunks.append(chunk)


def _snippet(raw, limit=200):
    text = raw[:limit].decode('utf-8', 'replace').strip()
    return text + ('...' if len(raw) > limit else '')


def _json_default(value):
    # nova_object primitives are JSON already, save the odd set or
    # datetime a virt driver may leave in a hint or a limit.
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)
