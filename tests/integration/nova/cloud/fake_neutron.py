"""Just enough of Neutron's API for Nova servers booted with no network.

Nova asks Neutron about ports, networks and security groups even for a
server created with ``"networks": "none"``; every list is empty here and
every write succeeds with an empty object.

    fake_neutron.py PORT
"""

import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_COLLECTION = re.compile(r'^/v2\.0/([a-z_-]+?)(?:\.json)?$')


class Neutron(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def _reply(self, status, doc):
        raw = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        path = self.path.split('?', 1)[0].rstrip('/')
        if path == '':
            port = self.server.server_address[1]
            return self._reply(200, {'versions': [{
                'id': 'v2.0', 'status': 'CURRENT',
                'links': [{'rel': 'self',
                           'href': 'http://127.0.0.1:%d/v2.0/' % port}]}]})
        m = _COLLECTION.match(path)
        if m:
            return self._reply(200, {m.group(1).replace('-', '_'): []})
        self._reply(404, {'NeutronError': {'type': 'NotFound',
                                           'message': path, 'detail': ''}})

    def _write(self):
        length = int(self.headers.get('Content-Length') or 0)
        if length:
            self.rfile.read(length)
        self._reply(200, {})

    do_POST = do_PUT = do_DELETE = _write

    def log_message(self, fmt, *args):
        sys.stderr.write('fake-neutron: %s\n' % (fmt % args))


if __name__ == '__main__':
    ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])),
                        Neutron).serve_forever()
