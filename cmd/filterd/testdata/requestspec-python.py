#!/usr/bin/python3
"""Writes requestspec-python.json: a webhook body whose spec is a RequestSpec
primitive made by Nova's own classes (python3-nova) and written by
json.dumps, with upper-case identifiers, a cell with (fake) credentials,
a context with a token, and fields filterd does not know.

    /usr/bin/python3 cmd/filterd/testdata/requestspec-python.py > cmd/filterd/testdata/requestspec-python.json

(the order of nova_object.changes differs from run to run: they are sets)
"""
import json
import sys

from nova import objects

objects.register_all()

cell = objects.CellMapping(
    uuid='1c6e3c71-3a3f-4c4f-9d7c-0c2c2b8f7a10', name='cell1',
    database_connection='mysql+pymysql://nova:Cell-DB-Secret-42@10.0.0.9/nova_cell1',
    transport_url='rabbit://nova:Rabbit-Secret-77@10.0.0.9:5672/', disabled=False)
flavor = objects.Flavor(
    id=1, flavorid='42', name='m1.small', memory_mb=2048, vcpus=1, root_gb=20,
    ephemeral_gb=0, swap=0, rxtx_factor=1.0, vcpu_weight=0, disabled=False,
    is_public=True, extra_specs={}, description=None)
spec = objects.RequestSpec(
    instance_uuid='6F1C0D3E-8B2A-4C1D-9E7F-0A1B2C3D4E5F',
    project_id='A1B2C3D4E5F60718293A4B5C6D7E8F90',
    user_id='0a1b2c3d4e5f60718293a4b5c6d7e8f9',
    num_instances=1, availability_zone='nova', flavor=flavor,
    scheduler_hints={'_nova_check_type': ['live_migrate'], 'group': ['g1']},
    requested_destination=objects.Destination(host='hm1', node='hm1', cell=cell),
    is_bfv=False, ignore_hosts=None, force_hosts=None, force_nodes=None)
body = {
    "spec": spec.obj_to_primitive(),
    "context": {
        "request_id": "req-0c4b5a69-1d2e-4f3a-9b8c-7d6e5f4a3b2c", "global_request_id": None,
        "user_id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "project_id": "A1B2C3D4E5F60718293A4B5C6D7E8F90", "roles": ["admin"],
        "auth_token": "gAAAAAB-keystone-token-secret", "service_catalog": [{"type": "compute"}]},
    "hosts": [{"host": h, "hypervisor_hostname": h} for h in ["hm1", "hm3", "hm5"]],
    "weights": {"hm1": 1.0, "hm3": 0.5, "hm5": 0.0},
    "rebuild": False, "resize": False, "live": True, "vmware": False,
    "pipeline": "nova-live-migrate", "extra": {"unknown": [1, {"deep": None}]},
}
sys.stdout.write(json.dumps(body) + "\n")
