"""Keystone's service users, services and endpoints, then Nova's flavors and
the test image, for the mini cloud. Reads the rig's cloud.env.

    bootstrap.py RIG keystone   (after keystone is up)
    bootstrap.py RIG compute    (after glance and nova-api are up)
"""

import os
import sys

from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3


def load_env(rig):
    env = {}
    with open(os.path.join(rig, 'cloud.env')) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith('#') and '=' in line:
                k, v = line.split('=', 1)
                env[k] = v.strip("'\"")
    return env


def admin_session(env):
    auth = v3.Password(
        auth_url='http://127.0.0.1:%s/v3' % env['KEYSTONE_PORT'],
        username='admin', password=env['ADMIN_PASSWORD'],
        project_name='admin', user_domain_name='Default',
        project_domain_name='Default')
    return ks_session.Session(auth=auth)


def keystone(env, sess):
    from keystoneclient.v3 import client
    ks = client.Client(session=sess)
    project = ks.projects.create('service', 'default')
    admin = ks.roles.find(name='admin')
    for user in ('nova', 'placement', 'glance'):
        u = ks.users.create(user, domain='default',
                            password=env['SERVICE_PASSWORD'])
        ks.roles.grant(admin, user=u, project=project)
    for name, kind, port, suffix in (
            ('placement', 'placement', 'PLACEMENT_PORT', ''),
            ('nova', 'compute', 'NOVA_API_PORT', '/v2.1'),
            ('glance', 'image', 'GLANCE_PORT', '')):
        svc = ks.services.create(name, type=kind)
        url = 'http://127.0.0.1:%s%s' % (env[port], suffix)
        for iface in ('public', 'internal', 'admin'):
            ks.endpoints.create(svc, url, interface=iface,
                                region='RegionOne')


def compute(env, sess, rig):
    nova = {'service_type': 'compute', 'interface': 'public'}
    for flavorid, name, ram in (('1', 'm1.tiny', 256), ('2', 'm1.small', 512)):
        sess.post('/flavors', endpoint_filter=nova, json={'flavor': {
            'id': flavorid, 'name': name, 'vcpus': 1, 'ram': ram,
            'disk': 1}})
    glance = {'service_type': 'image', 'interface': 'public'}
    for name in ('tiny', 'tiny2'):
        image = sess.post('/v2/images', endpoint_filter=glance, json={
            'name': name, 'disk_format': 'raw', 'container_format': 'bare',
            'visibility': 'public'}).json()
        sess.put('/v2/images/%s/file' % image['id'], endpoint_filter=glance,
                 data=b'\0' * 1024,
                 headers={'Content-Type': 'application/octet-stream'})


def main():
    rig, phase = sys.argv[1], sys.argv[2]
    env = load_env(rig)
    sess = admin_session(env)
    if phase == 'keystone':
        keystone(env, sess)
    elif phase == 'compute':
        compute(env, sess, rig)
    else:
        sys.exit('unknown phase %r' % phase)


if __name__ == '__main__':
    main()
