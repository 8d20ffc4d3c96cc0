"""ForcedMoveGuard, the nova-api paste filter that refuses scheduler bypasses.

    /usr/bin/python3 -m unittest -v l1.test_api_guard

The guard's decisions, table-driven, and the WSGI behaviour around a stand-in
application; tests/integration/nova/cloud runs it inside a real nova-api.
"""

import io
import json
import unittest

from ledgerfence_nova import api_guard

ACTION = '/v2.1/servers/0b3c/action'
SERVERS = '/v2.1/servers'


def live(host='h3', force=None):
    body = {'host': host, 'block_migration': 'auto'}
    if force is not None:
        body['force'] = force
    return {'os-migrateLive': body}


def evacuate(host='h3', force=None):
    body = {'host': host}
    if force is not None:
        body['force'] = force
    return {'evacuate': body}


class TestForcedMove(unittest.TestCase):

    CASES = [
        # (name, path, body, microversion, refused)
        ('live, named host, 2.1', ACTION, live(), '2.1', True),
        ('live, named host, 2.29', ACTION, live(), '2.29', True),
        ('live, named host, 2.30', ACTION, live(), '2.30', False),
        ('live, force, 2.30', ACTION, live(force=True), '2.30', True),
        ('live, force as text, 2.30', ACTION, live(force='True'), '2.30',
         True),
        ('live, force false, 2.30', ACTION, live(force=False), '2.30', False),
        ('live, force, 2.67', ACTION, live(force=True), '2.67', True),
        ('live, force, 2.68 (Nova refuses it)', ACTION, live(force=True),
         '2.68', False),
        ('live, no host, 2.1', ACTION, live(host=None), '2.1', False),
        ('live, force, latest', ACTION, live(force=True), 'latest', False),
        ('evacuate, named host, 2.28', ACTION, evacuate(), '2.28', True),
        ('evacuate, named host, 2.29', ACTION, evacuate(), '2.29', False),
        ('evacuate, force, 2.29', ACTION, evacuate(force=True), '2.29', True),
        ('evacuate, force, 2.68', ACTION, evacuate(force=True), '2.68',
         False),
        ('evacuate, no host, 2.1', ACTION, evacuate(host=None), '2.1',
         False),
        ('cold migrate, named host', ACTION, {'migrate': {'host': 'h3'}},
         '2.56', False),
        ('rebuild', ACTION, {'rebuild': {'imageRef': 'x'}}, '2.1', False),
        ('create, forced host', SERVERS,
         {'server': {'availability_zone': 'nova:h3'}}, '2.1', True),
        ('create, forced node', SERVERS,
         {'server': {'availability_zone': 'nova::h3-node'}}, '2.1', True),
        ('create, zone only', SERVERS,
         {'server': {'availability_zone': 'nova'}}, '2.1', False),
        ('create, host at 2.74 (scheduled)', SERVERS,
         {'server': {'host': 'h3'}}, '2.74', False),
    ]

    def test_cases(self):
        for name, path, body, version, refused in self.CASES:
            with self.subTest(name):
                mv = api_guard.microversion(
                    {'HTTP_OPENSTACK_API_VERSION': 'compute ' + version})
                why = api_guard.forced_move(path, body, mv)
                self.assertEqual(refused, why is not None, why)

    def test_microversion_headers(self):
        mv = api_guard.microversion
        self.assertEqual((2, 1), mv({}))
        self.assertEqual((2, 30), mv(
            {'HTTP_OPENSTACK_API_VERSION': 'volume 3.5, compute 2.30'}))
        self.assertEqual((2, 25), mv(
            {'HTTP_X_OPENSTACK_NOVA_API_VERSION': '2.25'}))
        self.assertEqual(api_guard.LATEST, mv(
            {'HTTP_OPENSTACK_API_VERSION': 'compute latest'}))


class TestMiddleware(unittest.TestCase):

    def call(self, path, body, version='2.30', method='POST'):
        seen = {}

        def app(environ, start_response):
            seen['body'] = environ['wsgi.input'].read(
                int(environ.get('CONTENT_LENGTH') or 0))
            start_response('202 Accepted', [])
            return [b'']

        raw = json.dumps(body).encode()
        environ = {'REQUEST_METHOD': method, 'PATH_INFO': path,
                   'CONTENT_LENGTH': str(len(raw)),
                   'wsgi.input': io.BytesIO(raw),
                   'HTTP_OPENSTACK_API_VERSION': 'compute ' + version}
        status = []
        out = api_guard.ForcedMoveGuard.factory({})(app)(
            environ, lambda s, h: status.append(s))
        return status[0], b''.join(out), seen.get('body'), raw

    def test_refuses_a_forced_live_migration(self):
        status, out, seen, _ = self.call(ACTION, live(force=True))
        self.assertEqual('403 Forbidden', status)
        self.assertIsNone(seen)
        self.assertIn('forced live migration',
                      json.loads(out)['forbidden']['message'])

    def test_passes_a_checked_move_with_its_body_intact(self):
        status, _, seen, raw = self.call(ACTION, live())
        self.assertEqual('202 Accepted', status)
        self.assertEqual(raw, seen)

    def test_passes_other_methods(self):
        status, _, _, _ = self.call(ACTION, live(force=True), method='PUT')
        self.assertEqual('202 Accepted', status)


if __name__ == '__main__':
    unittest.main()
