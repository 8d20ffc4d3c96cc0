"""LedgerfenceFilter: Nova asks filterd which hosts a VM may go to.

Load it in nova.conf of the nova-scheduler::

    [filter_scheduler]
    available_filters = nova.scheduler.filters.all_filters
    available_filters = ledgerfence_nova.filter.LedgerfenceFilter
    enabled_filters = ...,LedgerfenceFilter

    [ledgerfence]
    url = http://127.0.0.1:9480/scheduler/nova/external

Each scheduling pass sends ONE request with every candidate host, in the body
of SAP's Nova fork and cobaltcore-dev/cortex, and keeps exactly the hosts
filterd returns, in filterd's order. When filterd cannot answer, or answers
something that cannot be trusted, no host passes (unless fail_open).
"""


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

# Context fields that must not leave the scheduler.
_PRIVATE_CONTEXT = ('auth_token', 'service_catalog')


class LedgerfenceFilter(filters.BaseHostFilter):
    """Keep only the hosts ledgerfence allows for the VM's data."""

    # A rebuild with a new image keeps the VM on its host, but that host may
    # no longer be allowed (the host's record or the regulation changed).
    RUN_ON_REBUILD = True

    # Regulations are per VM: in a multi-create request every instance is
    # asked about on its own.
    run_filter_once_per_request = False

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
        asked = {s.host for s in states}

        try:
            body = build_body(spec_obj, ctx, states,
                              None if op == UNKNOWN else op)
            answer = client.Client(
                opts.url, opts.timeout, token=opts.token,
                ca_file=opts.ca_file,
                webhook_path=lf_conf.WEBHOOK_PATH).post(body, asked)
        except client.FilterdError as e:
            return self._failed(states, e, uuid, request_id, op)
        except Exception as e:  # never let a surprise pass hosts unchecked
            return self._failed(states, client.FilterdError(
                client.FilterdError.KIND_INTERNAL, repr(e)),
                uuid, request_id, op)

        by_host = {}
        for s in states:
            by_host.setdefault(s.host, []).append(s)
        kept = [s for name in answer.hosts for s in by_host[name]]
        LOG.info('ledgerfence decision %(decision)s: %(removed)d of '
                 '%(total)d hosts removed (instance %(uuid)s, operation '
                 '%(op)s, request %(req)s, %(ms).1f ms)',
                 {'decision': answer.decision_id or '-',
                  'removed': len(states) - len(kept), 'total': len(states),
                  'uuid': uuid, 'op': op or 'create', 'req': request_id,
                  'ms': answer.elapsed * 1000})
        if LOG.isEnabledFor(logging.DEBUG):
            LOG.debug('ledgerfence decision %(decision)s removed %(hosts)s',
                      {'decision': answer.decision_id or '-',
                       'hosts': sorted(asked - set(answer.hosts))})
        return kept

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


def build_body(spec_obj, ctx, states, op):
    """The SAP/cortex external-scheduler body for one pass.

    The caller's RequestSpec is not changed: the operation goes into the
    primitive's copy of the scheduler hints.
    """
    spec = spec_obj.obj_to_primitive()
    data = spec['nova_object.data']
    hints = dict(data.get('scheduler_hints') or {})
    if op and not operation.hint_value(spec_obj):
        hints[operation.HINT] = [op]
    if hints or 'scheduler_hints' in data:
        data['scheduler_hints'] = hints
    return {
        'spec': spec,
        'context': _context_dict(ctx),
        'hosts': [{'host': s.host, 'hypervisor_hostname': s.nodename}
                  for s in states],
        'weights': {},
        'rebuild': op == operation.REBUILD,
        # Nova runs a cold migration as a resize to the same flavor.
        'resize': op in (operation.RESIZE, operation.MIGRATE),
        'live': op == operation.LIVE_MIGRATE,
        'vmware': False,
    }


def _context_dict(ctx):
    if ctx is None:
        return {}
    values = ctx.to_dict()
    for key in _PRIVATE_CONTEXT:
        values.pop(key, None)
    return values


def _field(obj, name):
    return getattr(obj, name) if name in obj else None
