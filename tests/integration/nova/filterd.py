"""A real filterd (and hostagent) for the Nova integration tests.

The binaries are built from this repository with ``go build`` unless
LEDGERFENCE_FILTERD / LEDGERFENCE_HOSTAGENT name prebuilt ones. When they
cannot be built the tests are skipped, except under
LEDGERFENCE_REQUIRE_INTEGRATION=1 (CI), where that is a failure.
"""

import http.client
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import unittest
import urllib.parse

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..',
                                    '..'))
WEBHOOK_PATH = '/scheduler/nova/external'


class Unavailable(Exception):
    """A component could not be built or started."""


def required():
    return os.environ.get('LEDGERFENCE_REQUIRE_INTEGRATION') == '1'


def unavailable(err):
    """Skip, or fail when the integration tests are required."""
    if required():
        raise err
    raise unittest.SkipTest(str(err))


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def build(command, outdir):
    """Path of a binary for ./cmd/<command>, built into outdir if needed."""
    prebuilt = os.environ.get('LEDGERFENCE_' + command.upper())
    if prebuilt:
        if not os.access(prebuilt, os.X_OK):
            raise Unavailable('%s=%s is not executable'
                              % ('LEDGERFENCE_' + command.upper(), prebuilt))
        return prebuilt
    go = shutil.which('go') or '/usr/local/go/bin/go'
    if not os.path.exists(os.path.join(REPO, 'cmd', command)):
        raise Unavailable('%s: ./cmd/%s does not exist' % (REPO, command))
    out = os.path.join(outdir, command)
    try:
        res = subprocess.run([go, 'build', '-o', out, './cmd/' + command],
                             cwd=REPO, capture_output=True, text=True,
                             timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Unavailable('go build ./cmd/%s: %s' % (command, e))
    if res.returncode != 0:
        raise Unavailable('go build ./cmd/%s failed:\n%s'
                          % (command, res.stderr[-4000:]))
    return out


class Filterd(object):
    """One filterd process with its own data directory and admin token."""

    def __init__(self, binary, workdir, port=None, tls=None, client_ca=None,
                 client_cert=None, webhook_token=None):
        """tls: (cert file, key file, CA file) to serve HTTPS; client_ca:
        the CA file of --tls-client-ca, and client_cert the (cert file, key
        file) this harness then presents; webhook_token: --webhook-token.
        """
        self.binary = binary
        self.workdir = workdir
        self.tls = tls
        self.client_ca = client_ca
        self.client_cert = client_cert
        self.webhook_token = webhook_token
        self.port = port or free_port()
        self.token = secrets.token_hex(16)
        self.data = workdir and os.path.join(workdir, 'filterd-data')
        self.log_path = workdir and os.path.join(workdir, 'filterd.log')
        self.proc = None

    @classmethod
    def attach(cls, port, token):
        """A filterd someone else started."""
        f = cls(None, None, port)
        f.token = token
        return f

    @property
    def url(self):
        return '%s://127.0.0.1:%d' % ('https' if self.tls else 'http',
                                      self.port)

    @property
    def webhook_url(self):
        return self.url + WEBHOOK_PATH

    def start(self, timeout=30):
        os.makedirs(self.data, exist_ok=True)
        self._log = open(self.log_path, 'ab')
        args = [self.binary, '--listen', '127.0.0.1:%d' % self.port,
                '--data', self.data, '--admin-token', self.token]
        if self.tls:
            args += ['--tls-cert', self.tls[0], '--tls-key', self.tls[1]]
        if self.client_ca:
            args += ['--tls-client-ca', self.client_ca]
        env = dict(os.environ)
        if self.webhook_token:  # by environment, as the README advises
            env['LEDGERFENCE_WEBHOOK_TOKEN'] = self.webhook_token
        self.proc = subprocess.Popen(
            args, env=env,
            stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable('filterd exited with %s:\n%s'
                                  % (self.proc.returncode, self.log_tail()))
            try:
                status, _, _ = self.request('GET', '/readyz')
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise Unavailable('filterd not ready within %ds:\n%s'
                          % (timeout, self.log_tail()))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._log.close()
        self.proc = None

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, 'rb') as f:
                return f.read()[-n:].decode('utf-8', 'replace')
        except OSError:
            return ''

    def request(self, method, path, body=None, token=None, timeout=10):
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.tls[2])
            if self.client_cert:
                ctx.load_cert_chain(*self.client_cert)
            conn = http.client.HTTPSConnection(
                '127.0.0.1', self.port, timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection('127.0.0.1', self.port,
                                              timeout=timeout)
        headers = {'Accept': 'application/json'}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers['Content-Type'] = 'application/json'
        if token:
            headers['Authorization'] = 'Bearer ' + token
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, dict(resp.getheaders()), raw
        finally:
            conn.close()

    def _write(self, path, body):
        status, _, raw = self.request('PUT', path, body, token=self.token)
        if not 200 <= status < 300:
            raise AssertionError('PUT %s: HTTP %d %s' % (path, status, raw))
        return json.loads(raw) if raw else None

    def put_host(self, host, country, organizations, region=None):
        body = {'country': country, 'organizations': list(organizations)}
        if region:
            body['region'] = region
        return self._write('/v1/hosts/' + urllib.parse.quote(host, safe=''),
                           body)

    def put_regulation(self, subject, countries, organizations):
        return self._write(
            '/v1/regulations/' + urllib.parse.quote(subject, safe=':'),
            {'countries': list(countries),
             'organizations': list(organizations)})

    def decision(self, decision_id):
        status, _, raw = self.request(
            'GET', '/v1/decisions/' + urllib.parse.quote(decision_id))
        if status != 200:
            raise AssertionError('GET decision %s: HTTP %d %s'
                                 % (decision_id, status, raw))
        return json.loads(raw)


def _openssl(*args):
    subprocess.run(('openssl',) + args, check=True, capture_output=True)


def make_ca(directory, name='ca'):
    """A CA made with openssl: <name>.pem and <name>.key in directory;
    returns the certificate's file."""
    base = os.path.join(directory, name)
    _openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
             '-subj', '/CN=ledgerfence test %s' % name,
             '-keyout', base + '.key', '-out', base + '.pem')
    return base + '.pem'


def issue(directory, ca, name, server=False):
    """A certificate for name signed by the CA of make_ca (its .pem file),
    for a server on 127.0.0.1 or a client: (cert file, key file)."""
    base = os.path.join(directory, name)
    with open(base + '.ext', 'w') as f:
        if server:
            f.write('subjectAltName=IP:127.0.0.1,DNS:localhost\n'
                    'extendedKeyUsage=serverAuth\n')
        else:
            f.write('extendedKeyUsage=clientAuth\n')
    _openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=' + name,
             '-keyout', base + '.key', '-out', base + '.csr')
    _openssl('x509', '-req', '-in', base + '.csr', '-CA', ca,
             '-CAkey', ca[:-len('.pem')] + '.key', '-CAcreateserial',
             '-days', '2', '-extfile', base + '.ext', '-out', base + '.pem')
    return base + '.pem', base + '.key'


def make_tls(directory):
    """A CA and a certificate for 127.0.0.1 signed by it, with openssl:
    (cert file, key file, CA file)."""
    ca = make_ca(directory)
    cert, key = issue(directory, ca, 'filterd', server=True)
    return cert, key, ca


def reasons(decision):
    """{host: reason} of the denied hosts in a decision document.

    Accepts a list of per-host verdicts under any key, each an object that
    names its host ("host") and, when denied, its reason ("reason").
    """
    found = {}

    def walk(node):
        if isinstance(node, dict):
            host = node.get('host')
            if isinstance(host, str) and 'reason' in node:
                if node['reason']:
                    found[host] = node['reason']
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(decision)
    return found
