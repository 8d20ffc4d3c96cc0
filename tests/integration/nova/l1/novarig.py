"""Nova's own objects for the Level-1 tests: configuration, databases, cells.

Nova is set up as a nova-scheduler would be, from a nova.conf, with its API
and cell databases in SQLite files under a temporary directory (migrated by
Nova's own db_sync), so that HostManager, RequestSpec, InstanceMapping and
InstanceAction are the real ones.
"""

import datetime
import os

from oslo_utils import uuidutils

import nova.conf
from nova import config
from nova import context as nova_context
from nova import objects
from nova.db import migration

objects.register_all()
CONF = nova.conf.CONF

NOVA_CONF = """\
[DEFAULT]
state_path = {tmp}
transport_url = fake://
[api_database]
connection = sqlite:///{tmp}/nova_api.sqlite
[database]
connection = sqlite:///{tmp}/nova_cell1.sqlite
[filter_scheduler]
available_filters = nova.scheduler.filters.all_filters
available_filters = ledgerfence_nova.filter.LedgerfenceFilter
enabled_filters = ComputeFilter,ImagePropertiesFilter,LedgerfenceFilter
[ledgerfence]
url = {url}
timeout = 2
"""


def configure(tmp, url):
    """Parse a nova.conf as the scheduler does and create the databases."""
    path = os.path.join(tmp, 'nova.conf')
    with open(path, 'w') as f:
        f.write(NOVA_CONF.format(tmp=tmp, url=url))
    config.parse_args(['nova-scheduler', '--config-file', path],
                      default_config_files=[])
    migration.db_sync(database='api')
    migration.db_sync(database='main')
    ctx = nova_context.get_admin_context()
    cell = objects.CellMapping(
        ctx, uuid=uuidutils.generate_uuid(), name='cell1',
        transport_url='none:///',
        database_connection=CONF.database.connection)
    cell.create()
    return cell


def host_state(host, cell_uuid, node=None):
    """A HostState as HostManager builds it from a compute node record."""
    from nova.scheduler import host_manager
    node = node or host + '-node'
    now = datetime.datetime.now(datetime.timezone.utc)
    compute = objects.ComputeNode(
        uuid=uuidutils.generate_uuid(), host=host, hypervisor_hostname=node,
        memory_mb=8192, free_ram_mb=8192, local_gb=100, free_disk_gb=100,
        local_gb_used=0, disk_available_least=100, vcpus=8, vcpus_used=0,
        updated_at=now, numa_topology=None, pci_device_pools=None,
        host_ip='127.0.0.1', hypervisor_type='fake', hypervisor_version=1000,
        cpu_info='{}', supported_hv_specs=[], stats={'num_instances': '0'},
        cpu_allocation_ratio=16.0, metrics='[]', ram_allocation_ratio=1.5,
        disk_allocation_ratio=1.0)
    state = host_manager.HostState(host, node, cell_uuid)
    state.update(compute=compute,
                 service={'disabled': False, 'forced_down': False,
                          'updated_at': now, 'created_at': now,
                          'host': host},
                 aggregates=[], inst_dict={})
    return state


def flavor(name='m1.tiny', flavorid='1'):
    return objects.Flavor(id=int(flavorid), flavorid=flavorid, name=name,
                          vcpus=1, memory_mb=256, root_gb=1, ephemeral_gb=0,
                          swap=0, extra_specs={})


def request_context(project_id='project-a', user_id='user-a'):
    return nova_context.RequestContext(user_id, project_id, is_admin=True)


def request_spec(ctx, instance_uuid, **fields):
    """A RequestSpec as the conductor sends it for one instance."""
    values = dict(
        instance_uuid=instance_uuid, project_id=ctx.project_id,
        user_id=ctx.user_id, flavor=flavor(), num_instances=1,
        scheduler_hints={}, ignore_hosts=None, force_hosts=None,
        force_nodes=None, requested_destination=None, instance_group=None,
        is_bfv=False, availability_zone=None,
        image=objects.ImageMeta.from_dict(
            {'id': uuidutils.generate_uuid(), 'name': 'tiny',
             'properties': {}}))
    values.update(fields)
    return objects.RequestSpec(ctx, **values)


def instance(ctx, cell, uuid, host, action=None, task_state=None,
             flavor_obj=None):
    """An instance in cell1 and, if given, the action of ctx's request."""
    objects.InstanceMapping(ctx, instance_uuid=uuid, cell_mapping=cell,
                            project_id=ctx.project_id,
                            user_id=ctx.user_id).create()
    with nova_context.target_cell(ctx, cell) as cctx:
        inst = objects.Instance(
            cctx, uuid=uuid, project_id=ctx.project_id, user_id=ctx.user_id,
            host=host, node=host + '-node', vm_state='active',
            task_state=task_state, flavor=flavor_obj or flavor(),
            old_flavor=None, new_flavor=None)
        inst.create()
        if action:
            objects.InstanceAction.action_start(cctx, uuid, action,
                                                want_result=False)
    return inst
