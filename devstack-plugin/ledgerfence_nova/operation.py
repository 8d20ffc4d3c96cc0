"""Which operation a scheduling pass is for.

Upstream Nova tells its filters only about rebuilds (the scheduler hint
``_nova_check_type=['rebuild']``). A pass without requested_destination is a
boot. For the other moves the operation is the instance action that the API
recorded under the request's id, in the instance's cell; the instance's
task_state is the fallback.
"""

from oslo_log import log as logging

from nova import context as nova_context
from nova import exception
from nova import objects

LOG = logging.getLogger(__name__)

HINT = '_nova_check_type'

# ledgerfence's operation names, as filterd reads them from the hint.
LIVE_MIGRATE = 'live_migrate'
MIGRATE = 'migrate'
RESIZE = 'resize'
EVACUATE = 'evacuate'
REBUILD = 'rebuild'
UNSHELVE = 'unshelve'

# Instance action names (nova.compute.instance_actions) of the operations
# that reach the scheduler. 'create' (a boot) sends no hint.
_BY_ACTION = {
    'create': None,
    'live-migration': LIVE_MIGRATE,
    'migrate': MIGRATE,
    'resize': RESIZE,
    'evacuate': EVACUATE,
    'rebuild': REBUILD,
    'unshelve': UNSHELVE,
}


class Unknown(Exception):
    """The operation could not be worked out."""


def hint_value(spec_obj):
    """The _nova_check_type hint already in the spec, or None."""
    if 'scheduler_hints' not in spec_obj or not spec_obj.scheduler_hints:
        return None
    value = spec_obj.scheduler_hints.get(HINT)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return value or None


def find(spec_obj):
    """Return the operation of this pass, or None for a boot.

    Nova sets requested_destination, with the instance's cell, for every
    move it schedules (live and cold migration, resize, evacuate, unshelve;
    a rebuild carries the hint): a pass without one is a boot, told without
    a database query. A move costs one query in the instance's cell (two
    when requested_destination names no cell, as for a boot to a requested
    host, which looks for the instance mapping first).

    Raises Unknown when the instance or its action cannot be read.
    """
    hinted = hint_value(spec_obj)
    if hinted:
        return hinted
    dest = (spec_obj.requested_destination
            if 'requested_destination' in spec_obj else None)
    if dest is None:
        return None
    ctx = getattr(spec_obj, '_context', None)
    uuid = spec_obj.instance_uuid if 'instance_uuid' in spec_obj else None
    if ctx is None or not uuid:
        raise Unknown('the request spec has no context or instance uuid')
    cell = dest.cell if 'cell' in dest else None
    if cell is None:
        try:
            mapping = objects.InstanceMapping.get_by_instance_uuid(ctx, uuid)
        except exception.InstanceMappingNotFound:
            return None  # not built yet: a boot
        if not mapping.cell_mapping:
            return None  # the instance is not in a cell yet: a boot
        cell = mapping.cell_mapping
    with nova_context.target_cell(ctx, cell) as cctx:
        action = None
        if ctx.request_id:
            action = objects.InstanceAction.get_by_request_id(
                cctx, uuid, ctx.request_id)
        if action is not None and action.action in _BY_ACTION:
            return _BY_ACTION[action.action]
        try:
            instance = objects.Instance.get_by_uuid(
                cctx, uuid, expected_attrs=['flavor'])
        except exception.InstanceNotFound:
            raise Unknown('instance %s is not in cell %s'
                          % (uuid, getattr(cell, 'uuid', None)))
    return _by_task_state(instance, spec_obj, action)


def _by_task_state(instance, spec_obj, action):
    state = instance.task_state
    if state == 'migrating':
        return LIVE_MIGRATE
    if state == 'resize_prep':
        same = ('flavor' in spec_obj and spec_obj.flavor and
                spec_obj.flavor.flavorid == instance.flavor.flavorid)
        return MIGRATE if same else RESIZE
    if state == 'rebuilding':
        return EVACUATE  # a rebuild carries the hint already
    if state == 'unshelving':
        return UNSHELVE
    if state in (None, 'scheduling'):
        return None
    raise Unknown('instance action %r, task state %r'
                  % (getattr(action, 'action', None), state))
