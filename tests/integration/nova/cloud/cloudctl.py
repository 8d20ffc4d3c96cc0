"""The mini cloud's APIs as its administrator sees them, with explicit
compute API microversions (the forced-move paths depend on them).

As a command, for start.sh:  cloudctl.py RIG computes-up N | hypervisors N
| start-recorder N | wait-recorders SECONDS
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

COMPUTE = {'service_type': 'compute', 'interface': 'public'}
LATEST = '2.93'   # Zed's newest compute API microversion


def load_env(rig):
    env = {}
    with open(os.path.join(rig, 'cloud.env')) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith('#') and '=' in line:
                k, v = line.split('=', 1)
                env[k] = v
    return env


class Cloud(object):
    """The cloud's APIs as admin; guarded=True talks to the nova-api that
    has ledgerfence's ForcedMoveGuard in its pipeline."""

    def __init__(self, rig, guarded=False):
        self.rig = rig
        self.env = load_env(rig)
        self.endpoint = None
        if guarded:
            self.endpoint = 'http://127.0.0.1:%s/v2.1' % (
                self.env['NOVA_API_GUARDED_PORT'])
        auth = v3.Password(
            auth_url='http://127.0.0.1:%s/v3' % self.env['KEYSTONE_PORT'],
            username='admin', password=self.env['ADMIN_PASSWORD'],
            project_name='admin', user_domain_name='Default',
            project_domain_name='Default')
        self.session = ks_session.Session(auth=auth)

    @property
    def project_id(self):
        return self.session.get_project_id()

    def call(self, method, path, microversion=LATEST, body=None):
        """One compute API call; returns (status, json or None, headers)."""
        resp = self.session.request(
            path, method, endpoint_filter=COMPUTE, json=body,
            raise_exc=False, endpoint_override=self.endpoint,
            headers={'OpenStack-API-Version': 'compute ' + microversion})
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        return resp.status_code, doc, resp.headers

    def ok(self, method, path, microversion=LATEST, body=None):
        status, doc, headers = self.call(method, path, microversion, body)
        if not 200 <= status < 300:
            raise AssertionError('%s %s (compute %s): HTTP %d %s'
                                 % (method, path, microversion, status, doc))
        return doc

    # --- services and hosts
    def services(self):
        return self.ok('GET', '/os-services?binary=nova-compute')['services']

    def computes_up(self):
        return sorted(s['host'] for s in self.services()
                      if s['state'] == 'up' and s['status'] == 'enabled')

    def hypervisors(self):
        return self.ok('GET', '/os-hypervisors')['hypervisors']

    def force_down(self, host, down=True):
        svc = [s for s in self.services() if s['host'] == host][0]
        self.ok('PUT', '/os-services/%s' % svc['id'], '2.53',
                {'forced_down': down})

    # --- servers
    def create(self, name, flavor='1', image='tiny'):
        """POST a server; returns its uuid without waiting."""
        image_id = self.image_id(image)
        doc = self.ok('POST', '/servers', body={'server': {
            'name': name, 'flavorRef': flavor, 'imageRef': image_id,
            'networks': 'none'}})
        return doc['server']['id']

    def boot(self, name, flavor='1', image='tiny', timeout=120):
        uuid = self.create(name, flavor, image)
        self.wait(uuid, lambda s: s['status'] in ('ACTIVE', 'ERROR'),
                  timeout)
        return uuid

    def image_id(self, name):
        resp = self.session.get('/v2/images?name=%s' % name, endpoint_filter={
            'service_type': 'image', 'interface': 'public'})
        return resp.json()['images'][0]['id']

    def server(self, uuid):
        return self.ok('GET', '/servers/%s' % uuid)['server']

    @staticmethod
    def host_of(server):
        return server['OS-EXT-SRV-ATTR:host']

    def wait(self, uuid, done, timeout=120, what='server'):
        deadline = time.monotonic() + timeout
        while True:
            s = self.server(uuid)
            if done(s):
                return s
            if time.monotonic() > deadline:
                raise AssertionError('%s %s: still %s/%s on %s after %ds'
                                     % (what, uuid, s['status'],
                                        s['OS-EXT-STS:task_state'],
                                        self.host_of(s), timeout))
            time.sleep(0.5)

    def wait_idle(self, uuid, timeout=120):
        return self.wait(
            uuid, lambda s: s['OS-EXT-STS:task_state'] is None and
            s['status'] not in ('BUILD', 'MIGRATING', 'RESIZE', 'REBUILD'),
            timeout)

    def action(self, uuid, body, microversion=LATEST):
        return self.call('POST', '/servers/%s/action' % uuid, microversion,
                         body)

    def migrations(self, uuid):
        doc = self.ok('GET', '/os-migrations?instance_uuid=%s' % uuid, '2.80')
        return sorted(doc['migrations'], key=lambda m: m['id'])

    def last_migration_status(self, uuid, final=('completed', 'error',
                                                 'failed', 'done'),
                              timeout=60):
        """The status of the server's last migration once it is final.

        Nova moves the server to its new host and clears its task state a
        moment before it marks the migration completed; on a loaded machine
        that moment is seconds long."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.migrations(uuid)[-1]['status']
            if status in final or time.monotonic() > deadline:
                return status
            time.sleep(0.5)

    def actions(self, uuid):
        doc = self.ok('GET', '/servers/%s/os-instance-actions' % uuid, '2.84')
        return doc['instanceActions']

    def action_events(self, uuid, request_id):
        doc = self.ok('GET', '/servers/%s/os-instance-actions/%s'
                      % (uuid, request_id), '2.84')
        return doc['instanceAction'].get('events', [])

    def delete(self, uuid, timeout=60):
        self.call('DELETE', '/servers/%s' % uuid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, _, _ = self.call('GET', '/servers/%s' % uuid)
            if status == 404:
                return
            time.sleep(0.5)


# --- processes of the rig (as start.sh spawns them)
def _group_alive(pgid):
    """A process of the group is alive (zombies do not count)."""
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != 'Z':
            return True
    return False


def stop_compute(rig, n, timeout=30):
    """Stop nova-compute n (as a failed host would: no clean-up)."""
    stop_service(rig, 'nova-compute%d' % n, timeout)


def service_running(rig, name):
    path = os.path.join(rig, 'pids', name + '.pid')
    if not os.path.exists(path):
        return False
    with open(path) as f:
        return _group_alive(int(f.read()))


def signal_service(rig, name, sig):
    """Send sig to one of the rig's processes (and its process group)."""
    with open(os.path.join(rig, 'pids', name + '.pid')) as f:
        os.killpg(int(f.read()), sig)


def stop_service(rig, name, timeout=30):
    """Kill one of the rig's processes (and its process group)."""
    path = os.path.join(rig, 'pids', name + '.pid')
    with open(path) as f:
        pgid = int(f.read())
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while _group_alive(pgid) and time.monotonic() < deadline:
        try:  # reap it when it is our child
            os.waitpid(pgid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    os.remove(path)


def _spawn(rig, name, args, extra_env=None):
    """Start a process as start.sh's spawn does: own session, pid file,
    output to logs/NAME.out, marked as the rig's."""
    log = open(os.path.join(rig, 'logs', name + '.out'), 'ab')
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
        env=dict(os.environ, LEDGERFENCE_NOVA_RIG=rig, **(extra_env or {})))
    log.close()
    with open(os.path.join(rig, 'pids', name + '.pid'), 'w') as f:
        f.write(str(proc.pid))
    return proc


def start_compute(rig, n):
    """Start nova-compute n again, as start.sh does."""
    etc = os.path.join(rig, 'etc', 'nova')
    return _spawn(rig, 'nova-compute%d' % n, [
        '/usr/bin/python3', '-c',
        'import sys; from nova.cmd.compute import main; sys.exit(main())',
        '--config-file', os.path.join(etc, 'nova.conf'),
        '--config-file', os.path.join(etc, 'compute%d.conf' % n),
        '--log-file', os.path.join(rig, 'logs', 'nova-compute%d.log' % n)])


def start_filterd(rig):
    """Start filterd again on its port and ledger directory."""
    env = load_env(rig)
    return _spawn(rig, 'filterd', [
        env['FILTERD_BIN'], '--listen', '127.0.0.1:' + env['FILTERD_PORT'],
        '--data', os.path.join(rig, 'filterd'),
        '--admin-token', env['FILTERD_TOKEN']])


# --- ledgerfence's recorders, host agents and ledgerctl, and the broker
def filterd_url(env):
    return 'http://127.0.0.1:%s' % env['FILTERD_PORT']


def amqp_url(env):
    """The cloud's broker as the recorder takes it (nova.conf's
    transport_url with the scheme amqp)."""
    return 'amqp://openstack:%s@127.0.0.1:%s/' % (env['SERVICE_PASSWORD'],
                                                  env['RABBIT_PORT'])


def start_recorder(rig, n):
    """Start recorder replica n (1 or 2): Nova's notifications from the
    cloud's RabbitMQ to placements through filterd, with its own writer
    token of role recorder; /metrics on RECORDER_METRICS_n. The broker's
    password and the token are given in the environment, never as flags."""
    env = load_env(rig)
    return _spawn(rig, 'recorder%d' % n, [
        env['RECORDER_BIN'], '--log-format', 'json',
        '--metrics-listen', '127.0.0.1:' + env['RECORDER_METRICS_%d' % n]],
        extra_env={'LEDGERFENCE_LEDGER': filterd_url(env),
                   'LEDGERFENCE_TOKEN': env['RECORDER_TOKEN_%d' % n],
                   'LEDGERFENCE_AMQP_URL': amqp_url(env)})


def recorder_state(rig, n):
    """'consuming' (its queue bound and consumed since its last start),
    'starting', or the last line of its output when it has exited."""
    path = os.path.join(rig, 'logs', 'recorder%d.out' % n)
    try:
        with open(path, errors='replace') as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
    # The output of the current run only: after the last start.
    starts = [i for i, line in enumerate(lines) if 'recorder starting' in line]
    if starts:
        lines = lines[starts[-1]:]
    if not service_running(rig, 'recorder%d' % n):
        return (lines[-1] if lines else 'no output') or 'exited'
    if any("consuming Nova's notifications" in line for line in lines):
        return 'consuming'
    return 'starting'


def wait_recorders(rig, timeout=60, replicas=(1, 2)):
    """Wait until every replica consumes; raises when one has exited or
    the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        states = {n: recorder_state(rig, n) for n in replicas}
        if all(s == 'consuming' for s in states.values()):
            return
        ended = [s for s in states.values()
                 if s not in ('consuming', 'starting')]
        if ended or time.monotonic() > deadline:
            raise AssertionError('recorders not consuming: %s' % states)
        time.sleep(0.3)


def recorder_metric(rig, n, name, label=None):
    """A sample of recorder n's /metrics (summed over label sets matching
    label, a 'key="value"' string), or None when it does not answer."""
    import urllib.request
    env = load_env(rig)
    url = 'http://127.0.0.1:%s/metrics' % env['RECORDER_METRICS_%d' % n]
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    total, found = 0.0, False
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith('#'):
            continue
        key, _, value = line.rpartition(' ')
        if key.split('{')[0] != name or (label and label not in key):
            continue
        total += float(value)
        found = True
    return total if found else None


def start_hostagent(rig, n, country, organizations, interval='2s'):
    """Start the host agent of fake-compute-n as a daemon: it re-asserts
    its host's record and sweeps every interval with the cloud's admin
    credentials (OS_*), recording as the second witness the VMs it sees
    come and go, with its own writer token (role hostagent, bound to the
    host)."""
    env = load_env(rig)
    return _spawn(rig, 'hostagent%d' % n, [
        env['HOSTAGENT_BIN'], '--host', 'fake-compute-%d' % n,
        '--country', country, '--organization', ','.join(organizations),
        '--interval', interval, '--head-state', 'none',
        '--log-format', 'json'],
        extra_env={
            'LEDGERFENCE_LEDGER': filterd_url(env),
            'LEDGERFENCE_TOKEN': env['HOSTAGENT_TOKEN_%d' % n],
            'OS_AUTH_URL': 'http://127.0.0.1:%s/v3' % env['KEYSTONE_PORT'],
            'OS_USERNAME': 'admin', 'OS_PASSWORD': env['ADMIN_PASSWORD'],
            'OS_PROJECT_NAME': 'admin', 'OS_USER_DOMAIN_NAME': 'Default',
            'OS_PROJECT_DOMAIN_NAME': 'Default',
            'OS_REGION_NAME': 'RegionOne', 'OS_INTERFACE': 'public'})


def ledgerctl(rig, *args, timeout=60):
    """ledgerctl against the cloud's filterd, as its administrator."""
    env = load_env(rig)
    return subprocess.run(
        [env['LEDGERCTL_BIN']] + list(args) + [
            '--ledger', filterd_url(env), '--token', env['FILTERD_TOKEN'],
            '--head-state', 'none'],
        capture_output=True, text=True, timeout=timeout)


def rabbitmqctl(rig, *args, timeout=60):
    res = subprocess.run([os.path.join(rig, 'bin', 'rabbitmqctl')] +
                         list(args), capture_output=True, text=True,
                         timeout=timeout)
    if res.returncode != 0:
        raise AssertionError('rabbitmqctl %s: exit %d\n%s%s' % (
            ' '.join(args), res.returncode, res.stdout, res.stderr))
    return res.stdout


def queues(rig):
    """{name: (ready, unacked, consumers)} of the broker's queues."""
    out = rabbitmqctl(rig, 'list_queues', '-q', '--formatter', 'json',
                      'name', 'messages_ready',
                      'messages_unacknowledged', 'consumers')
    return {q['name']: (q['messages_ready'], q['messages_unacknowledged'],
                        q['consumers']) for q in json.loads(out or '[]')}


def queue(rig, name='ledgerfence-recorder'):
    """(ready, unacked, consumers) of a queue of the broker, or None when
    it does not exist."""
    return queues(rig).get(name)


def restart_rabbitmq(rig, timeout=120):
    """Stop the cloud's RabbitMQ node cleanly and start it again, on the
    same state; returns once it is up (its clients reconnect by
    themselves)."""
    rabbitmqctl(rig, 'stop', timeout=timeout)
    path = os.path.join(rig, 'pids', 'rabbitmq.pid')
    with open(path) as f:
        pgid = int(f.read())
    deadline = time.monotonic() + timeout
    while _group_alive(pgid):
        if time.monotonic() > deadline:
            raise AssertionError('rabbitmq did not stop')
        time.sleep(0.2)
    os.remove(path)
    proc = _spawn(rig, 'rabbitmq',
                  [os.path.join(rig, 'bin', 'rabbitmq-server')])
    # await_startup fails at once until the node has registered with epmd.
    deadline = time.monotonic() + timeout
    while True:
        try:
            rabbitmqctl(rig, 'await_startup', timeout=timeout)
            return proc
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


# --- what the scheduler logged
_DECISION = re.compile(
    r'ledgerfence decision (?P<id>\S+): (?P<removed>\d+) of (?P<total>\d+) '
    r'hosts removed \(instance (?P<instance>\S+), operation (?P<op>\S+), '
    r'request (?P<request>\S+), (?P<ms>[\d.]+) ms\)')


def scheduler_decisions(rig, instance=None):
    """The filter's decision lines in nova-scheduler.log, oldest first."""
    out = []
    with open(os.path.join(rig, 'logs', 'nova-scheduler.log')) as f:
        for line in f:
            m = _DECISION.search(line)
            if m and (instance is None or m.group('instance') == instance):
                d = m.groupdict()
                d['removed'] = int(d['removed'])
                d['total'] = int(d['total'])
                d['ms'] = float(d['ms'])
                out.append(d)
    return out


def main():
    rig, what, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if what == 'start-recorder':
        start_recorder(rig, n)
        return
    if what == 'wait-recorders':
        wait_recorders(rig, n)
        return
    cloud = Cloud(rig)
    if what == 'computes-up':
        found = len(cloud.computes_up())
    elif what == 'hypervisors':
        found = len(cloud.hypervisors())
    else:
        sys.exit('unknown check %r' % what)
    sys.exit(0 if found >= n else 1)


if __name__ == '__main__':
    main()
