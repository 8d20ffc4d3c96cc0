#!/usr/bin/python3
"""Writes notifications.json: the AMQP messages Nova's versioned
notifications make on RabbitMQ, each made by Nova's own classes
(python3-nova: compute_utils.notify_about_instance_*) and sent by
oslo.messaging's rabbit driver (kombu's in-memory transport stands in for
the broker, so the bodies are the bytes oslo.messaging and kombu publish).

One VM's life, in the order Nova sends it, with the instance record as Nova
holds it at each point (nova/compute/manager.py):

  boot on hm1; live migration hm1 -> hm2; resize hm2 -> hm3, confirmed;
  resize hm3 -> hm4, reverted; hm3 down, evacuation to hm5; rebuild on hm5;
  shelve and offload; unshelve on hm1; delete.

then messages the recorder must skip or read in other forms: an
instance.power_off.end, an instance.create.error, a legacy (unversioned)
notification, the boot through the un-enveloped 'messaging' driver, a
delete by nova-api of a VM never scheduled, and a boot with a global
request id.

    /usr/bin/python3 pkg/nova/notify/testdata/notifications.py > pkg/nova/notify/testdata/notifications.json

With --url rabbit://user:pass@127.0.0.1:PORT/ it publishes the same
messages to that broker instead (the integration tests do).

Time is fixed (oslo_utils.timeutils' override) and message ids come from a
counter, so that the output is the same from run to run.
"""
import datetime
import json
import sys
import uuid

from oslo_utils import timeutils

import oslo_messaging
from oslo_messaging import transport as om_transport
from oslo_messaging.notify import notifier as om_notifier

import nova.conf
from nova import context as nova_context
from nova import objects
from nova import rpc
from nova.compute import utils as compute_utils
from nova.network import model as network_model
from nova.objects import fields

CONF = nova.conf.CONF
objects.register_all()

_counter = [0]


def _uuid4():
    _counter[0] += 1
    return uuid.UUID(int=(0x5bf99a36_0f8d_4f3d_bfd1_000000000000 + _counter[0]))


# message_id and _unique_id: deterministic.
uuid.uuid4 = _uuid4

url = 'kombu+memory:////'
args = sys.argv[1:]
if len(args) == 2 and args[0] == '--url':
    url = args[1]
elif args:
    sys.exit('usage: notifications.py [--url rabbit://...]')

CONF.register_opts(om_transport._transport_opts)
CONF.register_opts(om_notifier._notifier_opts, group='oslo_messaging_notifications')
CONF([], project='nova', default_config_files=[])
CONF.set_override('transport_url', url)
CONF.set_override('host', 'controller')
CONF.set_override('notification_format', 'both', group='notifications')
CONF.set_override('bdms_in_notifications', False, group='notifications')
CONF.set_override('driver', ['messagingv2'], group='oslo_messaging_notifications')
rpc.set_defaults(control_exchange='nova')
rpc.init(CONF)

captured = []
capture = None
if url.startswith('kombu+memory'):
    import kombu
    conn = kombu.Connection('memory://')
    exchange = kombu.Exchange('nova', type='topic', durable=False)
    capture = kombu.Queue('capture', exchange=exchange, routing_key='#',
                          channel=conn.channel())
    capture.declare()

VM = '6F1C0D3E-8B2A-4C1D-9E7F-0A1B2C3D4E5F'
PROJECT = 'A1B2C3D4E5F60718293A4B5C6D7E8F90'
USER = '0a1b2c3d4e5f60718293a4b5c6d7e8f9'
T0 = datetime.datetime(2026, 12, 4, 10, 0, 0)


def now(minutes, micro=0):
    return T0 + datetime.timedelta(minutes=minutes, microseconds=micro)


def ctx(req, global_req=None, project=PROJECT):
    return nova_context.RequestContext(
        user_id=USER, project_id=project, request_id=req,
        global_request_id=global_req, auth_token='gAAAAAB-keystone-token-secret',
        roles=['admin'])


def instance(c, host, uuid_=VM, **kw):
    values = dict(
        id=1, uuid=uuid_, user_id=USER, project_id=PROJECT, reservation_id='r-3zk1ao1c',
        display_name='vm1', display_description='', hostname='vm1', host=host,
        node=host, os_type=None, architecture='x86_64', availability_zone='nova',
        image_ref='155d900f-4e14-4e4c-a73d-069cbf4541e6', key_name=None,
        kernel_id='', ramdisk_id='', created_at=now(0), launched_at=now(1),
        terminated_at=None, deleted_at=None, updated_at=timeutils.utcnow(),
        vm_state='active', power_state=1, task_state=None, progress=0,
        metadata={'purpose': 'ledger'}, locked=False, auto_disk_config=False,
        system_metadata={}, trusted_certs=None,
        keypairs=objects.KeyPairList(objects=[]), tags=objects.TagList(objects=[]),
        flavor=objects.Flavor(
            id=1, name='m1.small', memory_mb=2048, vcpus=1, root_gb=20,
            ephemeral_gb=0, flavorid='2', swap=0, rxtx_factor=1.0, vcpu_weight=0,
            disabled=False, is_public=True, extra_specs={}, projects=[],
            description=None),
        info_cache=objects.InstanceInfoCache(network_info=network_model.NetworkInfo([])))
    values.update(kw)
    return objects.Instance(c, **values)


A = fields.NotificationAction
END = fields.NotificationPhase.END
names = []


def at(minutes, name):
    timeutils.set_time_override(now(minutes, 123456 if minutes % 2 else 0))
    names.append(name)


# boot on hm1
c = ctx('req-11111111-1111-4111-8111-111111111111')
at(1, 'boot')
compute_utils.notify_about_instance_create(c, instance(c, 'hm1'), 'hm1', phase=END)

# live migration hm1 -> hm2: the destination finishes first (post_dest),
# then the source, whose instance object still names itself.
c = ctx('req-22222222-2222-4222-8222-222222222222')
at(10, 'live_migration_post_dest')
compute_utils.notify_about_instance_action(
    c, instance(c, 'hm2'), 'hm2', action=A.LIVE_MIGRATION_POST_DEST, phase=END)
at(11, 'live_migration_post')
compute_utils.notify_about_instance_action(
    c, instance(c, 'hm1', task_state='migrating'), 'hm1',
    action=A.LIVE_MIGRATION_POST, phase=END)

# resize hm2 -> hm3 (resize_finish on the destination), confirmed (on the source)
c = ctx('req-33333333-3333-4333-8333-333333333333')
at(20, 'resize_finish')
compute_utils.notify_about_instance_action(
    c, instance(c, 'hm3', vm_state='resized'), 'hm3', action=A.RESIZE_FINISH, phase=END)
c = ctx('req-44444444-4444-4444-8444-444444444444')
at(21, 'resize_confirm')
compute_utils.notify_about_instance_action(
    c, instance(c, 'hm3'), 'hm2', action=A.RESIZE_CONFIRM, phase=END)

# resize hm3 -> hm4, reverted: the source sends resize_revert.end once the
# instance names it again.
c = ctx('req-55555555-5555-4555-8555-555555555555')
at(30, 'resize_finish_hm4')
compute_utils.notify_about_instance_action(
    c, instance(c, 'hm4', vm_state='resized'), 'hm4', action=A.RESIZE_FINISH, phase=END)
c = ctx('req-66666666-6666-4666-8666-666666666666')
at(31, 'resize_revert')
compute_utils.notify_about_instance_action(
    c, instance(c, 'hm3'), 'hm3', action=A.RESIZE_REVERT, phase=END)

# hm3 is down: nova-api sends instance.evacuate (the instance still names
# hm3), then the destination rebuilds it (same request id).
c = ctx('req-77777777-7777-4777-8777-777777777777')
at(40, 'evacuate')
compute_utils.notify_about_instance_action(
    c, instance(c, 'hm3', task_state='rebuilding'), CONF.host,
    action=A.EVACUATE, source=fields.NotificationSource.API)
at(41, 'rebuild_evacuated')
compute_utils.notify_about_instance_rebuild(c, instance(c, 'hm5'), 'hm5', phase=END)

# rebuild in place on hm5
c = ctx('req-88888888-8888-4888-8888-888888888888')
at(50, 'rebuild')
compute_utils.notify_about_instance_rebuild(c, instance(c, 'hm5'), 'hm5', phase=END)

# shelve, and offload: the instance names no host any more
c = ctx('req-99999999-9999-4999-8999-999999999999')
at(60, 'shelve_offload')
compute_utils.notify_about_instance_action(
    c, instance(c, None, vm_state='shelved_offloaded', power_state=4,
                availability_zone=None),
    'hm5', action=A.SHELVE_OFFLOAD, phase=END)

# unshelve onto hm1
c = ctx('req-aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa')
at(70, 'unshelve')
compute_utils.notify_about_instance_action(
    c, instance(c, 'hm1'), 'hm1', action=A.UNSHELVE, phase=END)

# delete on hm1
c = ctx('req-bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb')
at(80, 'delete')
compute_utils.notify_about_instance_action(
    c, instance(c, 'hm1', vm_state='deleted', power_state=0,
                terminated_at=now(80), deleted_at=now(80)),
    'hm1', action=A.DELETE, phase=END)

# --- messages to skip or to read in other forms
c = ctx('req-cccccccc-cccc-4ccc-8ccc-cccccccccccc')
at(90, 'power_off')
compute_utils.notify_about_instance_action(
    c, instance(c, 'hm1', power_state=4), 'hm1', action=A.POWER_OFF, phase=END)
at(91, 'create_error')
try:
    raise ValueError('no space left')
except ValueError as e:
    compute_utils.notify_about_instance_create(
        c, instance(c, 'hm2', uuid_='0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f', vm_state='error'),
        'hm2', phase=fields.NotificationPhase.ERROR, exception=e)
at(92, 'legacy')
rpc.get_notifier('compute', 'hm1').info(c, 'compute.instance.create.end', {
    'instance_id': VM, 'tenant_id': PROJECT, 'host': 'hm1'})

# the boot again, through the 'messaging' driver: no oslo envelope
at(93, 'boot_unenveloped')
v1 = oslo_messaging.Notifier(rpc.NOTIFICATION_TRANSPORT, driver='messaging',
                             topics=['versioned_notifications'],
                             serializer=rpc.RequestContextSerializer(rpc.JsonPayloadSerializer()))
saved = rpc.NOTIFIER
rpc.NOTIFIER = v1
c = ctx('req-dddddddd-dddd-4ddd-8ddd-dddddddddddd')
compute_utils.notify_about_instance_create(c, instance(c, 'hm2'), 'hm2', phase=END)
rpc.NOTIFIER = saved

# nova-api deletes a VM that was never scheduled (no host)
c = ctx('req-eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee')
at(94, 'delete_unscheduled')
compute_utils.notify_about_instance_action(
    c, instance(c, None, uuid_='1d2e3f40-5a6b-4c7d-8e9f-a0b1c2d3e4f5', vm_state='error',
                terminated_at=now(94), deleted_at=now(94)),
    CONF.host, action=A.DELETE, phase=END, source=fields.NotificationSource.API)

# a boot whose request came with a global request id
c = ctx('req-ffffffff-ffff-4fff-8fff-ffffffffffff',
        global_req='req-0c4b5a69-1d2e-4f3a-9b8c-7d6e5f4a3b2c')
at(95, 'boot_global_request')
compute_utils.notify_about_instance_create(
    c, instance(c, 'hm4', uuid_='2e3f4051-6b7c-4d8e-9fa0-b1c2d3e4f506'), 'hm4', phase=END)

timeutils.clear_time_override()
if capture is None:
    rpc.cleanup()
    sys.exit(0)

out = []
while True:
    m = capture.get(no_ack=True)
    if m is None:
        break
    out.append({'name': names[len(out)] if len(out) < len(names) else None,
                'routing_key': m.delivery_info['routing_key'],
                'body': m.body.decode('utf-8')})
if len(out) != len(names):
    sys.exit('captured %d messages for %d events' % (len(out), len(names)))
json.dump(out, sys.stdout, indent=1)
sys.stdout.write('\n')
