"""ForcedMoveGuard: a nova-api paste filter that refuses the moves that skip
Nova's scheduler, and with it LedgerfenceFilter.

Nova runs no scheduler filter for

- a live migration to a named host with "force": true (compute API 2.30 to
  2.67), or to any named host before 2.30;
- an evacuation to a named host with "force": true (2.29 to 2.67), or to any
  named host before 2.29;
- a server created in a forced host, "availability_zone": "zone:host[:node]".

The guard answers those requests 403 before Nova sees them; everything else
passes untouched. A named host without force (live migration 2.30+,
evacuation 2.29+, cold migration 2.56+, server creation 2.74+) is checked by
the scheduler and is allowed. Add it to api-paste.ini after keystonecontext:

    [filter:ledgerfence_guard]
    paste.filter_factory = ledgerfence_nova.api_guard:ForcedMoveGuard.factory

    [composite:openstack_compute_api_v21]
    keystone = ... authtoken keystonecontext ledgerfence_guard osapi_compute_app_v21

Standard library only.
"""

import json
import re

# The compute API microversions at which Nova began checking named hosts
# (without force) and at which it stopped accepting force.
LIVE_MIGRATE_CHECKS_HOST = (2, 30)
EVACUATE_CHECKS_HOST = (2, 29)
FORCE_REMOVED = (2, 68)
DEFAULT_VERSION = (2, 1)
LATEST = (2, 1000)

_ACTION = re.compile(r'/servers/[^/]+/action/?$')
_SERVERS = re.compile(r'/servers/?$')
_MAX_BODY = 1024 * 1024


def microversion(environ):
    """The compute API microversion of a request, as (major, minor)."""
    value = None
    header = environ.get('HTTP_OPENSTACK_API_VERSION', '')
    for part in header.split(','):
        words = part.strip().split()
        if len(words) == 2 and words[0].lower() == 'compute':
            value = words[1]
    if value is None:
        value = environ.get('HTTP_X_OPENSTACK_NOVA_API_VERSION')
    if not value:
        return DEFAULT_VERSION
    if value.strip().lower() == 'latest':
        return LATEST
    try:
        major, minor = value.strip().split('.')
        return int(major), int(minor)
    except ValueError:
        return DEFAULT_VERSION  # Nova itself rejects it


def forced_move(path, body, version):
    """Why the request skips the scheduler, or None."""
    if not isinstance(body, dict):
        return None
    if _ACTION.search(path):
        live = body.get('os-migrateLive')
        if isinstance(live, dict) and live.get('host'):
            if version < LIVE_MIGRATE_CHECKS_HOST:
                return ('a live migration to a named host before compute '
                        'API 2.30')
            if version < FORCE_REMOVED and _true(live.get('force')):
                return 'a forced live migration'
        evac = body.get('evacuate')
        if isinstance(evac, dict) and evac.get('host'):
            if version < EVACUATE_CHECKS_HOST:
                return 'an evacuation to a named host before compute API 2.29'
            if version < FORCE_REMOVED and _true(evac.get('force')):
                return 'a forced evacuation'
    elif _SERVERS.search(path):
        server = body.get('server')
        zone = server.get('availability_zone') if isinstance(
            server, dict) else None
        # "zone:host", "zone:host:node", "zone::node", ":host" force a host
        # or node (an admin's privilege) and skip the filters.
        if isinstance(zone, str) and any(zone.split(':')[1:]):
            return 'a server created on a forced host (availability_zone)'
    return None


def _true(value):
    if isinstance(value, str):
        return value.strip().lower() in ('1', 't', 'true', 'on', 'y', 'yes')
    return bool(value)


class ForcedMoveGuard(object):
    """WSGI middleware; see the module's doc."""

    def __init__(self, app, conf=None):
        self.app = app

    @classmethod
    def factory(cls, global_config, **local_config):
        def _filter(app):
            return cls(app, local_config)
        return _filter

    def __call__(self, environ, start_response):
        if environ.get('REQUEST_METHOD') != 'POST':
            return self.app(environ, start_response)
        path = environ.get('PATH_INFO', '')
        if not (_ACTION.search(path) or _SERVERS.search(path)):
            return self.app(environ, start_response)
        try:
            length = int(environ.get('CONTENT_LENGTH') or 0)
        except ValueError:
            length = 0
        if length <= 0 or length > _MAX_BODY:
            return self.app(environ, start_response)
        raw = environ['wsgi.input'].read(length)
        environ['wsgi.input'] = _Body(raw)
        try:
            body = json.loads(raw.decode('utf-8'))
        except ValueError:
            return self.app(environ, start_response)  # Nova answers 400
        why = forced_move(path, body, microversion(environ))
        if why is None:
            return self.app(environ, start_response)
        message = ('%s skips the scheduler, so ledgerfence cannot check the '
                   'VM\'s regulation: name the host without "force" at '
                   'compute API 2.68 or later, or let the scheduler choose.'
                   % (why[0].upper() + why[1:]))
        out = json.dumps({'forbidden': {'code': 403,
                                        'message': message}}).encode()
        start_response('403 Forbidden', [
            ('Content-Type', 'application/json'),
            ('Content-Length', str(len(out)))])
        return [out]


class _Body(object):
    """The request body again, for the application after the guard."""

    def __init__(self, raw):
        self._raw = raw
        self._pos = 0

    def read(self, size=-1):
        if size is None or size < 0:
            size = len(self._raw) - self._pos
        chunk = self._raw[self._pos:self._pos + size]
        self._pos += len(chunk)
        return chunk

    def readline(self, size=-1):
        end = self._raw.find(b'\n', self._pos)
        end = len(self._raw) if end < 0 else end + 1
        if size is not None and size >= 0:
            end = min(end, self._pos + size)
        chunk = self._raw[self._pos:end]
        self._pos = end
        return chunk

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line
