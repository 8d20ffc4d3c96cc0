"""LedgerfenceFilter: Nova asks filterd which hosts a VM may go to.

Load it in nova.conf of the nova-scheduler::

    [filter_scheduler]
    available_filters = nova.scheduler.filters.all_filters
    available_filters = ledgerfence_nova.filter.LedgerfenceFilter
    enabled_filters = ...,LedgerfenceFilter

    [ledgerfence]
    url = https://filterd-a:8787/scheduler/nova/external,https://filterd-b:8787
    ca_file = /etc/ledgerfence/ca.pem

Each scheduling pass sends ONE request with every candidate host, in the body
of SAP's Nova fork and cobaltcore-dev/cortex, holding only what filterd reads,
and keeps exactly the hosts filterd returns, in filterd's order. When filterd
cannot answer, or answers something that cannot be trusted, no host passes
(unless fail_open).
"""


import json
import os

from oslo_log import log as logging

import nova.conf
from nova.scheduler import filters
from nova.scheduler import utils as scheduler_utils

from ledgerfence_nova import client
from ledgerfence_nova import conf as lf_conf
from ledgerfence_nova import operation

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF
lf_conf.register_opts(CONF)

# The operation, in logs, when it could not be worked out; filterd then
# gets no _nova_check_type.
UNKNOWN = 'unknown'


class LedgerfenceFilter(filters.BaseHostFilter):
    """Keep only the hosts ledgerfence allows for the VM's data."""

    # A rebuild with a new image keeps the VM on its host, but that host may
    # no longer be allowed (the host's record or the regulation changed).
    RUN_ON_REBUILD = True

    # Regulations are per VM: in a multi-create request every instance is
    # asked about on its own.
    run_filter_once_per_request = False

    def __init__(self):
        super().__init__()
        # The client of the current [ledgerfence] options, kept from one
        # pass to the next for its persistent connections.
        self._client = None
        self._client_key = None

    def host_passes(self, host_state, spec_obj):
        # Only for callers that use the per-host interface; the scheduler
        # calls filter_all.
        return bool(self.filter_all([host_state], spec_obj))

    def filter_all(self, filter_obj_list, spec_obj):
        states = list(filter_obj_list)
        if not states:
            return states
        # Overriding filter_all skips BaseHostFilter._filter_one, which is
        # where Nova honours RUN_ON_REBUILD.
        if (not self.RUN_ON_REBUILD and
                scheduler_utils.request_is_rebuild(spec_obj)):
            return states

        opts = CONF.ledgerfence
        uuid = _field(spec_obj, 'instance_uuid')
        ctx = getattr(spec_obj, '_context', None)
        request_id = getattr(ctx, 'request_id', None)
        op = self._operation(spec_obj, opts, uuid)

        try:
            body, index = build_body(spec_obj, ctx, states,
                                     None if op == UNKNOWN else op)
            answer = self._get_client(opts).post(body, index)
            if len(index) == len(states):
                kept = list(map(index.__getitem__, answer.hosts))
            else:  # several nodes of one host (ironic): keep them all
                kept = [s for name in answer.hosts for s in index[name]]
        except client.FilterdError as e:
            return self._failed(states, e, uuid, request_id, op)
        except Exception as e:  # never let a surprise pass hosts unchecked
            return self._failed(states, client.FilterdError(
                client.FilterdError.KIND_INTERNAL, repr(e)),
                uuid, request_id, op)

        if answer.skipped:
            LOG.warning('ledgerfence: asked %(url)s for instance %(uuid)s '
                        '(request %(req)s) after %(skipped)s',
                        {'url': answer.url, 'uuid': uuid, 'req': request_id,
                         'skipped': '; '.join(answer.skipped)})
        LOG.info('ledgerfence decision %(decision)s: %(removed)d of '
                 '%(total)d hosts removed (instance %(uuid)s, operation '
                 '%(op)s, request %(req)s, %(ms).1f ms)',
                 {'decision': answer.decision_id or '-',
                  'removed': len(states) - len(kept), 'total': len(states),
                  'uuid': uuid, 'op': op or 'create', 'req': request_id,
                  'ms': answer.elapsed * 1000})
        if LOG.isEnabledFor(logging.DEBUG):
            LOG.debug('ledgerfence decision %(decision)s from %(url)s '
                      'removed %(hosts)s',
                      {'decision': answer.decision_id or '-',
                       'url': answer.url,
                       'hosts': sorted(set(index) - set(answer.hosts))})
        return kept

    def _get_client(self, opts):
        # A replaced certificate, key or CA file makes a new client too.
        files = (opts.ca_file, opts.cert_file, opts.key_file)
        key = (tuple(opts.url or ()), opts.timeout, opts.connect_timeout,
               opts.token, files, tuple(map(_stamp, files)))
        if key != self._client_key:
            old, self._client, self._client_key = self._client, None, None
            if old is not None:
                old.close()
            self._client = client.Client(
                opts.url, opts.timeout, token=opts.token,
                ca_file=opts.ca_file, cert_file=opts.cert_file,
                key_file=opts.key_file,
                connect_timeout=opts.connect_timeout,
                webhook_path=lf_conf.WEBHOOK_PATH)
            self._client_key = key
        return self._client

    @staticmethod
    def _operation(spec_obj, opts, uuid):
        hinted = operation.hint_value(spec_obj)
        if hinted or not opts.lookup_operation:
            return hinted
        try:
            return operation.find(spec_obj)
        except Exception as e:  # the decision does not depend on it
            LOG.warning('ledgerfence: cannot tell the operation for instance '
                        '%(uuid)s (sent without one): %(err)s',
                        {'uuid': uuid, 'err': e})
            return UNKNOWN

    @staticmethod
    def _failed(states, err, uuid, request_id, op):
        fail_open = CONF.ledgerfence.fail_open
        LOG.error('ledgerfence: filterd failed (%(kind)s: %(err)s) for '
                  'instance %(uuid)s, operation %(op)s, request %(req)s, '
                  'decision %(decision)s; %(outcome)s',
                  {'kind': err.kind, 'err': err, 'uuid': uuid,
                   'op': op or 'create', 'req': request_id,
                   'decision': err.decision_id or '-',
                   'outcome': ('fail_open: keeping all %d hosts unchecked'
                               % len(states)) if fail_open else
                   ('failing closed: removing all %d hosts' % len(states))})
        return states if fail_open else []


# The body is built from these fields only, whatever else the RequestSpec
# and the context hold (cell mappings with database and message queue
# URLs, tokens, the service catalog): what filterd reads and nothing more.
_HOST = '{"host":"'
_NODE = '","hypervisor_hostname":"'
_NEXT = '"},{"host":"'
_FLAGS = ',"weights":{},"rebuild":%s,"resize":%s,"live":%s,"vmware":false}'
# The bytes that stand for themselves in a JSON string.
_PLAIN = bytes(c for c in range(0x20, 0x7f) if c not in b'"\\')
_encode = json.JSONEncoder(separators=(',', ':'), check_circular=False,
                           default=str).encode


def build_body(spec_obj, ctx, states, op):
    """The SAP/cortex external-scheduler body for one pass, as bytes, and
    the hosts it asks about: {host name: HostState}, or {host name: [every
    HostState of that host]} when a host has several nodes.

    It holds the RequestSpec's instance_uuid, project_id and scheduler
    hints (with the operation as _nova_check_type), the context's request
    ids, each host's name and node name, and the operation's flags. The
    caller's RequestSpec is not changed.
    """
    data = {}
    for key in ('instance_uuid', 'project_id'):
        value = _field(spec_obj, key)
        if value is not None:
            data[key] = value
    hints = _field(spec_obj, 'scheduler_hints')
    if hints or op:
        hints = {k: v for k, v in (hints or {}).items()}
        if op and not operation.hint_value(spec_obj):
            hints[operation.HINT] = [op]
        data['scheduler_hints'] = hints
    context = {}
    for key in ('request_id', 'global_request_id'):
        value = getattr(ctx, key, None)
        if value:
            context[key] = value
    head = _encode({'spec': {'nova_object.name': 'RequestSpec',
                             'nova_object.data': data},
                    'context': context})
    hosts, index = _hosts(states)
    flags = _FLAGS % (
        'true' if op == operation.REBUILD else 'false',
        # Nova runs a cold migration as a resize to the same flavor.
        'true' if op in (operation.RESIZE, operation.MIGRATE) else 'false',
        'true' if op == operation.LIVE_MIGRATE else 'false')
    return (head[:-1] + ',"hosts":' + hosts + flags).encode('utf-8'), index


def _hosts(states):
    """The "hosts" list as JSON text, and the index of build_body."""
    hosts = [s.host for s in states]
    nodes = [s.nodename for s in states]
    n = len(hosts)
    index = dict(zip(hosts, states))
    if len(index) != n:
        index = {}
        for s in states:
            index.setdefault(s.host, []).append(s)
    try:
        names = ''.join(hosts) + ''.join(nodes)
    except TypeError:  # a name that is not a string
        names = None
    # Names of printable ASCII without quotes or backslashes are their own
    # JSON text: the list is joined in one go, with no encoder per host.
    if (names is not None and names.isascii() and
            not names.encode('ascii').translate(None, _PLAIN)):
        parts = [None, _NODE, None, _NEXT] * n
        parts[0::4] = hosts
        parts[2::4] = nodes
        parts[-1] = '"}]'
        return '[' + _HOST + ''.join(parts), index
    return _encode([{'host': h, 'hypervisor_hostname': v}
                    for h, v in zip(hosts, nodes)]), index


def _stamp(path):
    """What tells a file's new version from its old one."""
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None  # the client will say why it cannot read it
    return st.st_mtime_ns, st.st_size, st.st_ino


def _field(obj, name):
    return getattr(obj, name) if name in obj else None
