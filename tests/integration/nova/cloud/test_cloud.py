"""End-to-end: a real Nova (Debian's Zed) with LedgerfenceFilter and filterd.

The mini cloud of start.sh: three fake-driver computes, registered in filterd
(by hostagent --once when it can write to filterd, else through filterd's
REST API; LEDGERFENCE_NOVA_HOSTAGENT=1 requires hostagent):

    fake-compute-1  JP  CompanyA    allowed
    fake-compute-2  GB  CompanyB    allowed
    fake-compute-3  DE  CompanyA    country_not_allowed

and every VM regulated like the seed's VM1 (JP, GB x CompanyA, CompanyB), by
its project's regulation from boot on and by its own after boot. Boot, live
and cold migration, resize, evacuation, rebuild and unshelve are each checked
both ways (to a host the regulation forbids: refused, the server stays; to an
allowed one: it moves), the scheduler's log line against filterd's decision
record; so are filterd being down (fail closed), the forced live migration
that skips the scheduler, and the nova-api guard that closes it.

Residency evidence: Nova sends versioned notifications to the cloud's
RabbitMQ, two recorders record each move as a placement on filterd's ledger
and, for the residency tests, a host agent per compute records the VMs it
sees come and go. A VM's life (boot, live and cold migration, a forced move
past the scheduler to the forbidden host, shelve-offload and unshelve,
deletion) is read back with ledgerctl residency: exactly those intervals,
the forced one a violation, on both witnesses' word; the report verifies and
fails once edited. A recorder killed during a burst of moves and the broker
restarted lose and double nothing. Run from
tests/integration/nova with /usr/bin/python3 -m unittest -v cloud.test_cloud.
The tests start the cloud in a temporary directory and stop it, unless
LEDGERFENCE_NOVA_RIG names a running one.
"""

import datetime
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import filterd as lf  # noqa: E402
from cloud import cloudctl  # noqa: E402

ALLOWED = ('fake-compute-1', 'fake-compute-2')
DENIED = 'fake-compute-3'
FACTS = {
    'fake-compute-1': ('JP', ['CompanyA']),
    'fake-compute-2': ('GB', ['CompanyB']),
    'fake-compute-3': ('DE', ['CompanyA']),
}
REGULATION = (['JP', 'GB'], ['CompanyA', 'CompanyB'])
NO_VALID_HOST = 'No valid host was found'

cloud = None
results = {}
run_started = time.time()
disturbed = set()  # VMs moved while a recorder was killed or the broker down
restarted = []  # computes the tests started again


class Rig(object):

    def __init__(self):
        self.owned = False
        self.rig = os.environ.get('LEDGERFENCE_NOVA_RIG')
        if not self.rig:
            self.rig = tempfile.mkdtemp(prefix='ledgerfence-nova-cloud-')
            self.owned = True
            t0 = time.monotonic()
            res = subprocess.run([os.path.join(HERE, 'start.sh'), self.rig],
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
            sys.stderr.write(res.stdout)
            if res.returncode != 0:
                self.close()
                raise lf.Unavailable('the mini cloud did not start:\n'
                                     + res.stdout[-3000:])
            results['bringup_seconds'] = round(time.monotonic() - t0, 1)
        try:
            self.api = cloudctl.Cloud(self.rig)
            env = self.api.env
            self.filterd = lf.Filterd.attach(int(env['FILTERD_PORT']),
                                             env['FILTERD_TOKEN'])
            self.register_hosts()
            self.filterd.put_regulation('project:' + self.api.project_id,
                                        *REGULATION)
        except BaseException:
            self.close()
            raise

    def register_hosts(self):
        """Each compute host's facts into filterd: by hostagent --once, as
        on a compute node at boot, when it is built and can write to
        filterd; else through filterd's REST API. LEDGERFENCE_NOVA_HOSTAGENT=1
        makes hostagent required."""
        agent = os.environ.get('LEDGERFENCE_HOSTAGENT') or os.path.join(
            self.rig, 'bin', 'hostagent')
        strict = os.environ.get('LEDGERFENCE_NOVA_HOSTAGENT') == '1'
        if not os.access(agent, os.X_OK):
            if strict:
                raise AssertionError('no hostagent binary at %s' % agent)
            agent = None
        for host, (country, orgs) in sorted(FACTS.items()):
            if agent:
                err = self.hostagent(agent, host, country, orgs)
                if err is None:
                    results['hosts_registered_by'] = 'hostagent --once'
                    continue
                if strict:
                    raise AssertionError(err)
                results['hostagent_unusable'] = err.splitlines()[-1][:200]
                agent = None
            self.filterd.put_host(host, country, orgs)
            results['hosts_registered_by'] = 'filterd REST API'

    def hostagent(self, agent, host, country, orgs):
        res = subprocess.run(
            [agent, '--once', '--host', host, '--country', country,
             '--organization', ','.join(orgs), '--ledger', self.filterd.url,
             '--token', self.filterd.token, '--deadline', '20s'],
            capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            return ('hostagent --once for %s: exit %d\n%s'
                    % (host, res.returncode, res.stderr.strip()))
        return None

    def close(self):
        if self.owned:
            subprocess.run([os.path.join(HERE, 'stop.sh'), self.rig])
            out = os.environ.get('LEDGERFENCE_NOVA_RESULTS')
            if out and os.path.isdir(os.path.join(self.rig, 'logs')):
                shutil.copytree(os.path.join(self.rig, 'logs'),
                                os.path.join(out, 'cloud-logs'),
                                dirs_exist_ok=True)
            if os.environ.get('LEDGERFENCE_KEEP_TMP'):
                print('kept', self.rig, file=sys.stderr)
            else:
                shutil.rmtree(self.rig, ignore_errors=True)


def setUpModule():
    global cloud
    try:
        cloud = Rig()
    except lf.Unavailable as e:
        lf.unavailable(e)


def tearDownModule():
    if cloud is None:
        return
    passes = [d['ms'] for d in cloudctl.scheduler_decisions(cloud.rig)]
    if passes:
        results['scheduler_passes'] = len(passes)
        results['filter_ms_median'] = round(statistics.median(passes), 2)
        results['filter_ms_max'] = max(passes)
    placement_figures()
    print('\nmini cloud figures: %s' % json.dumps(results), file=sys.stderr)
    out = os.environ.get('LEDGERFENCE_NOVA_RESULTS')
    if out:
        with open(os.path.join(out, 'cloud.json'), 'w') as f:
            json.dump(results, f, indent=1)
    cloud.close()


def placement_figures():
    """Nova's notification (oslo's timestamp) to its placement committed on
    filterd's embedded ledger (the placement's recorded_at), over every
    placement the recorders made in the run (the VMs of every test), and
    over those of the VMs no recorder kill or broker restart delayed."""
    try:
        status, _, raw = cloud.filterd.request(
            'GET', '/v1/placements?project=%s&from=%s' % (
                cloud.api.project_id, rfc3339(run_started)),
            token=cloud.filterd.token, timeout=60)
        if status != 200:
            raise AssertionError('HTTP %d %s' % (status, raw[:300]))
        nova = [p for p in json.loads(raw)['placements']
                if p['witness'] == 'nova']
    except (OSError, ValueError, AssertionError) as e:
        results['notification_to_placement'] = 'not read: %s' % e
        return
    for name, ps in (('', nova), ('_undisturbed', [
            p for p in nova if p['vm'] not in disturbed])):
        ms = sorted((epoch(p['recorded_at']) - epoch(p['at'])) * 1000
                    for p in ps)
        if ms:
            results['notification_to_placement_n' + name] = len(ms)
            results['notification_to_placement_ms_p50' + name] = round(
                percentile(ms, 50), 1)
            results['notification_to_placement_ms_p99' + name] = round(
                percentile(ms, 99), 1)


def percentile(sorted_values, p):
    """The p-th percentile (nearest rank) of sorted values."""
    k = max(0, min(len(sorted_values) - 1,
                   math.ceil(p / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


class CloudTestCase(unittest.TestCase):

    def setUp(self):
        self.api = cloud.api
        self.servers = []

    def tearDown(self):
        for uuid in self.servers:
            self.api.delete(uuid)

    def boot(self, name=None):
        t0 = time.monotonic()
        uuid = self.api.boot(name or self.id().rsplit('.', 1)[1][:50])
        results.setdefault('boot_seconds', []).append(
            round(time.monotonic() - t0, 1))
        self.servers.append(uuid)
        server = self.api.server(uuid)
        self.assertEqual('ACTIVE', server['status'], server.get('fault'))
        cloud.filterd.put_regulation('vm:' + uuid, *REGULATION)
        return uuid, self.api.host_of(server)

    def other_allowed(self, host):
        return [h for h in ALLOWED if h != host][0]

    def assert_stays(self, uuid, host):
        server = self.api.wait_idle(uuid)
        self.assertEqual(host, self.api.host_of(server))
        self.assertEqual('ACTIVE', server['status'])

    def assert_last_decision(self, uuid, op, removed, total):
        """The scheduler's last pass for uuid: what the filter logged, and
        what filterd recorded under the same decision id."""
        d = cloudctl.scheduler_decisions(cloud.rig, uuid)[-1]
        self.assertEqual((op, removed, total),
                         (d['op'], d['removed'], d['total']), d)
        doc = cloud.filterd.decision(d['id'])
        self.assertEqual((uuid, op, d['request']),
                         (doc.get('instance_uuid'), doc.get('operation'),
                          doc.get('request_id')), doc)
        return d

    def assert_failed_with_no_valid_host(self, uuid, request_id, timeout=60):
        """The instance action of request_id ends with a NoValidHost."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.api.action_events(uuid, request_id)
            failed = [e for e in events if e['result'] == 'Error']
            if failed:
                # "details" (compute API 2.84) carries the fault's message.
                self.assertIn(NO_VALID_HOST, failed[0].get('details') or '',
                              failed[0])
                return
            if time.monotonic() > deadline:
                self.fail('request %s: no failed event in %s'
                          % (request_id, events))
            time.sleep(0.5)

    def assert_denied_by_filterd(self, decision, host, reason):
        doc = cloud.filterd.decision(decision['id'])
        self.assertEqual(reason, lf.reasons(doc).get(host), doc)


class TestBoot(CloudTestCase):

    def test_boot_lands_only_on_allowed_hosts(self):
        for i in range(3):
            uuid, host = self.boot('boot-%d' % i)
            self.assertIn(host, ALLOWED)
            d = self.assert_last_decision(uuid, 'create', 1, 3)
            self.assert_denied_by_filterd(d, DENIED, 'country_not_allowed')


class TestLiveMigration(CloudTestCase):

    def test_to_a_non_compliant_host_ends_in_no_valid_host(self):
        uuid, host = self.boot()
        status, doc, _ = self.api.action(uuid, {'os-migrateLive': {
            'host': DENIED, 'block_migration': 'auto'}}, '2.30')
        self.assertEqual(400, status, doc)
        self.assertIn(NO_VALID_HOST, json.dumps(doc))
        self.assert_stays(uuid, host)
        self.assertEqual('error', self.api.last_migration_status(uuid))
        d = self.assert_last_decision(uuid, 'live_migrate', 1, 1)
        self.assert_denied_by_filterd(d, DENIED, 'country_not_allowed')

    def test_to_a_compliant_host_moves(self):
        uuid, host = self.boot()
        target = self.other_allowed(host)
        t0 = time.monotonic()
        status, doc, _ = self.api.action(uuid, {'os-migrateLive': {
            'host': target, 'block_migration': 'auto'}}, '2.30')
        self.assertEqual(202, status, doc)
        server = self.api.wait(uuid, lambda s: self.api.host_of(s) == target
                               and s['OS-EXT-STS:task_state'] is None, 120)
        results['live_migration_seconds'] = round(time.monotonic() - t0, 1)
        self.assertEqual('ACTIVE', server['status'])
        self.assertEqual('completed', self.api.last_migration_status(uuid))
        self.assert_last_decision(uuid, 'live_migrate', 0, 1)

    def test_scheduler_picks_only_a_compliant_host(self):
        uuid, host = self.boot()
        status, doc, _ = self.api.action(uuid, {'os-migrateLive': {
            'host': None, 'block_migration': 'auto'}}, '2.30')
        self.assertEqual(202, status, doc)
        server = self.api.wait(uuid, lambda s: self.api.host_of(s) != host
                               and s['OS-EXT-STS:task_state'] is None, 120)
        self.assertEqual(self.other_allowed(host), self.api.host_of(server))
        # The source is ignored; of the other two, the filter removed one.
        self.assert_last_decision(uuid, 'live_migrate', 1, 2)


class TestColdMigration(CloudTestCase):

    def test_to_a_non_compliant_host_is_refused(self):
        uuid, host = self.boot()
        status, doc, headers = self.api.action(
            uuid, {'migrate': {'host': DENIED}}, '2.56')
        self.assertEqual(202, status, doc)  # the conductor works on it
        self.assert_failed_with_no_valid_host(
            uuid, headers['x-openstack-request-id'])
        self.assert_stays(uuid, host)
        self.assertEqual('error', self.api.last_migration_status(uuid))
        d = self.assert_last_decision(uuid, 'migrate', 1, 1)
        self.assert_denied_by_filterd(d, DENIED, 'country_not_allowed')

    def test_to_a_compliant_host_moves(self):
        uuid, host = self.boot()
        target = self.other_allowed(host)
        status, doc, _ = self.api.action(uuid, {'migrate': {'host': target}},
                                         '2.56')
        self.assertEqual(202, status, doc)
        self.api.wait(uuid, lambda s: s['status'] == 'VERIFY_RESIZE', 120)
        self.assertEqual(204, self.api.action(
            uuid, {'confirmResize': None})[0])
        self.api.wait(uuid, lambda s: s['status'] == 'ACTIVE', 60)
        self.assert_stays(uuid, target)
        self.assert_last_decision(uuid, 'migrate', 0, 1)

    def test_resize_stays_on_compliant_hosts(self):
        uuid, host = self.boot()
        status, doc, _ = self.api.action(uuid, {'resize': {'flavorRef': '2'}})
        self.assertEqual(202, status, doc)
        server = self.api.wait(uuid, lambda s: s['status'] in (
            'VERIFY_RESIZE', 'ERROR', 'ACTIVE') and
            s['OS-EXT-STS:task_state'] is None, 120)
        self.assertEqual('VERIFY_RESIZE', server['status'])
        self.assertEqual(self.other_allowed(host), self.api.host_of(server))
        self.api.action(uuid, {'confirmResize': None})
        self.assert_last_decision(uuid, 'resize', 1, 2)


class TestEvacuate(CloudTestCase):

    def host_fails(self, host):
        n = int(host.rsplit('-', 1)[1])
        cloudctl.stop_compute(cloud.rig, n)
        self.api.force_down(host, True)
        self.addCleanup(self.host_recovers, host, n)

    def host_recovers(self, host, n):
        restarted.append(cloudctl.start_compute(cloud.rig, n))
        self.api.force_down(host, False)
        deadline = time.monotonic() + 90
        while host not in self.api.computes_up():
            if time.monotonic() > deadline:
                self.fail('%s did not come back' % host)
            time.sleep(1)

    def test_to_a_non_compliant_host_fails_and_to_a_compliant_one_moves(self):
        uuid, host = self.boot()
        self.host_fails(host)
        # 2.68+: no force flag, the scheduler always checks the target.
        status, doc, _ = self.api.action(uuid, {'evacuate': {
            'host': DENIED}}, '2.68')
        self.assertEqual(200, status, doc)
        # Nova marks a failed evacuation ERROR; the VM has not moved.
        server = self.api.wait(uuid, lambda s: s['status'] == 'ERROR', 60)
        self.assertIn(NO_VALID_HOST, server['fault']['message'])
        self.assertEqual(host, self.api.host_of(server))
        self.assertEqual('error', self.api.last_migration_status(uuid))
        d = self.assert_last_decision(uuid, 'evacuate', 1, 1)
        self.assert_denied_by_filterd(d, DENIED, 'country_not_allowed')

        target = self.other_allowed(host)
        status, doc, _ = self.api.action(uuid, {'evacuate': {
            'host': target}}, '2.68')
        self.assertEqual(200, status, doc)
        server = self.api.wait(uuid, lambda s: self.api.host_of(s) == target
                               and s['OS-EXT-STS:task_state'] is None, 120)
        self.assertEqual('ACTIVE', server['status'])
        self.assert_last_decision(uuid, 'evacuate', 0, 1)


class TestRebuild(CloudTestCase):

    def test_rebuild_on_a_host_made_non_compliant_is_refused(self):
        uuid, host = self.boot()
        country, orgs = FACTS[host]
        image = self.api.server(uuid)['image']['id']
        new_image = self.api.image_id('tiny2')
        # The host's record changes (it moved to DE, say) after placement.
        cloud.filterd.put_host(host, 'DE', orgs)
        self.addCleanup(cloud.filterd.put_host, host, country, orgs)
        status, doc, _ = self.api.action(uuid, {'rebuild': {
            'imageRef': new_image}})
        self.assertEqual(202, status, doc)
        # Nova marks a refused rebuild ERROR and keeps the old image.
        server = self.api.wait(uuid, lambda s: s['status'] == 'ERROR', 60)
        self.assertIn(NO_VALID_HOST, server['fault']['message'])
        self.assertEqual(image, server['image']['id'])
        self.assertEqual(host, self.api.host_of(server))
        d = self.assert_last_decision(uuid, 'rebuild', 1, 1)
        self.assert_denied_by_filterd(d, host, 'country_not_allowed')
        rebuild = [a for a in self.api.actions(uuid)
                   if a['action'] == 'rebuild'][0]
        events = self.api.action_events(uuid, rebuild['request_id'])
        self.assertIn('Error', [e['result'] for e in events], events)

    def test_rebuild_on_a_compliant_host_proceeds(self):
        uuid, host = self.boot()
        new_image = self.api.image_id('tiny2')
        status, doc, _ = self.api.action(uuid, {'rebuild': {
            'imageRef': new_image}})
        self.assertEqual(202, status, doc)
        server = self.api.wait(uuid, lambda s: s['status'] == 'ACTIVE' and
                               s['OS-EXT-STS:task_state'] is None and
                               s['image']['id'] == new_image, 120)
        self.assertEqual(host, self.api.host_of(server))
        self.assert_last_decision(uuid, 'rebuild', 0, 1)


class TestUnshelve(CloudTestCase):

    def shelve(self, uuid):
        status, doc, _ = self.api.action(uuid, {'shelve': None})
        self.assertEqual(202, status, doc)
        # shelved_offload_time = 0: offloaded at once, on no host. Nova
        # saves the state SHELVED_OFFLOADED, frees the host's resources,
        # then clears the host: a loaded machine shows the state with the
        # host still set for a moment.
        self.api.wait(
            uuid, lambda s: s['status'] == 'SHELVED_OFFLOADED' and
            s['OS-EXT-STS:task_state'] is None and
            self.api.host_of(s) is None, 120)

    def test_to_a_non_compliant_host_is_refused(self):
        uuid, host = self.boot()
        self.shelve(uuid)
        status, doc, headers = self.api.action(
            uuid, {'unshelve': {'host': DENIED}}, '2.91')
        self.assertEqual(202, status, doc)
        self.assert_failed_with_no_valid_host(
            uuid, headers['x-openstack-request-id'])
        server = self.api.wait(
            uuid, lambda s: s['OS-EXT-STS:task_state'] is None, 60)
        self.assertEqual('SHELVED_OFFLOADED', server['status'])
        d = self.assert_last_decision(uuid, 'unshelve', 1, 1)
        self.assert_denied_by_filterd(d, DENIED, 'country_not_allowed')

    def test_unshelve_lands_on_a_compliant_host(self):
        uuid, host = self.boot()
        self.shelve(uuid)
        status, doc, _ = self.api.action(uuid, {'unshelve': None}, '2.91')
        self.assertEqual(202, status, doc)
        server = self.api.wait(uuid, lambda s: s['status'] == 'ACTIVE' and
                               s['OS-EXT-STS:task_state'] is None, 120)
        self.assertIn(self.api.host_of(server), ALLOWED)
        self.assert_last_decision(uuid, 'unshelve', 1, 3)


class TestFilterdDown(CloudTestCase):
    """No filterd, no move: the filter fails closed in the real scheduler."""

    def test_moves_fail_closed_while_filterd_is_down(self):
        uuid, host = self.boot()
        target = self.other_allowed(host)
        cloudctl.stop_service(cloud.rig, 'filterd')
        self.addCleanup(self.filterd_back)
        status, doc, _ = self.api.action(uuid, {'os-migrateLive': {
            'host': target, 'block_migration': 'auto'}}, '2.30')
        self.assertEqual(400, status, doc)
        self.assertIn(NO_VALID_HOST, json.dumps(doc))
        self.assert_stays(uuid, host)
        with open(os.path.join(cloud.rig, 'logs',
                               'nova-scheduler.log')) as f:
            self.assertIn('filterd failed (unreachable', f.read())

        # Back with the same ledger directory: the same move is allowed.
        self.filterd_back()
        status, doc, _ = self.api.action(uuid, {'os-migrateLive': {
            'host': target, 'block_migration': 'auto'}}, '2.30')
        self.assertEqual(202, status, doc)
        self.api.wait(uuid, lambda s: self.api.host_of(s) == target and
                      s['OS-EXT-STS:task_state'] is None, 120)

    def filterd_back(self):
        if not cloudctl.service_running(cloud.rig, 'filterd'):
            restarted.append(cloudctl.start_filterd(cloud.rig))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if cloud.filterd.request('GET', '/readyz')[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.fail('filterd did not come back')


class TestForcedLiveMigration(CloudTestCase):
    """Documents the path that Nova's filters never see.

    At compute API 2.30 to 2.67 a live migration with "force": true (and
    before 2.30 any named host) skips the scheduler, so no filter runs and a
    VM can be moved to a host its regulation forbids. The deployment guide
    (devstack-plugin/README.md) says how to close it; at 2.68 and later Nova
    refuses "force" itself.
    """

    def test_force_at_2_30_bypasses_the_scheduler(self):
        uuid, host = self.boot()
        before = len(cloudctl.scheduler_decisions(cloud.rig, uuid))
        status, doc, _ = self.api.action(uuid, {'os-migrateLive': {
            'host': DENIED, 'block_migration': 'auto', 'force': True}},
            '2.30')
        self.assertEqual(202, status, doc)
        server = self.api.wait(uuid, lambda s: self.api.host_of(s) == DENIED
                               and s['OS-EXT-STS:task_state'] is None, 120)
        # The VM is now where its regulation forbids, and filterd was never
        # asked: this is the bypass the deployment guide closes.
        self.assertEqual(DENIED, self.api.host_of(server))
        self.assertEqual(before, len(cloudctl.scheduler_decisions(
            cloud.rig, uuid)))

    def test_force_is_refused_from_2_68(self):
        uuid, host = self.boot()
        status, doc, _ = self.api.action(uuid, {'os-migrateLive': {
            'host': DENIED, 'block_migration': 'auto', 'force': True}},
            '2.68')
        self.assertEqual(400, status, doc)
        self.assert_stays(uuid, host)


class TestForcedMoveGuard(CloudTestCase):
    """The same requests through the nova-api that has ledgerfence's
    ForcedMoveGuard (ledgerfence_nova.api_guard) in its paste pipeline."""

    def setUp(self):
        super().setUp()
        self.guarded = cloudctl.Cloud(cloud.rig, guarded=True)

    def assert_refused(self, status, doc):
        self.assertEqual(403, status, doc)
        self.assertIn('skips the scheduler', doc['forbidden']['message'])

    def test_refuses_every_forced_move(self):
        uuid, host = self.boot()
        before = len(cloudctl.scheduler_decisions(cloud.rig, uuid))
        for name, body, version in (
                ('forced live migration', {'os-migrateLive': {
                    'host': DENIED, 'block_migration': 'auto',
                    'force': True}}, '2.30'),
                ('live migration to a named host before 2.30',
                 {'os-migrateLive': {'host': DENIED, 'block_migration': False,
                                     'disk_over_commit': False}}, '2.1'),
                ('forced evacuation', {'evacuate': {
                    'host': DENIED, 'force': True}}, '2.29')):
            with self.subTest(name):
                self.assert_refused(*self.guarded.action(uuid, body,
                                                         version)[:2])
        self.assert_stays(uuid, host)
        self.assertEqual(before, len(cloudctl.scheduler_decisions(
            cloud.rig, uuid)))

    def test_refuses_a_forced_host_at_boot(self):
        status, doc, _ = self.guarded.call('POST', '/servers', body={
            'server': {'name': 'forced', 'flavorRef': '1',
                       'imageRef': self.api.image_id('tiny'),
                       'networks': 'none',
                       'availability_zone': 'nova:' + DENIED}})
        if status == 202:
            self.servers.append(doc['server']['id'])
        self.assert_refused(status, doc)

    def test_passes_the_moves_the_scheduler_checks(self):
        uuid, host = self.boot()
        status, doc, _ = self.guarded.action(uuid, {'os-migrateLive': {
            'host': DENIED, 'block_migration': 'auto'}}, '2.30')
        self.assertEqual(400, status, doc)
        self.assertIn(NO_VALID_HOST, json.dumps(doc))
        target = self.other_allowed(host)
        status, doc, _ = self.guarded.action(uuid, {'os-migrateLive': {
            'host': target, 'block_migration': 'auto'}}, '2.30')
        self.assertEqual(202, status, doc)
        self.api.wait(uuid, lambda s: self.api.host_of(s) == target and
                      s['OS-EXT-STS:task_state'] is None, 120)


# --- residency evidence: the recorders (witness nova) and the host agents
# (witness hostagent) on the ledger, read back as ledgerctl's report.
SWEEP = 2              # seconds between a host agent's sweeps
HOLD = 3 * SWEEP + 1   # how long a VM stays put between moves
COLD = ('resize', 'cold_migration')  # the ops a cold migration may carry


def rfc3339(t):
    return datetime.datetime.fromtimestamp(
        t, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')


_RFC3339 = re.compile(r'(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z$')


def epoch(s):
    """Seconds since the epoch of a UTC RFC 3339 time (Go's nanoseconds
    kept to the microsecond)."""
    m = _RFC3339.match(s)
    if not m:
        raise AssertionError('not a UTC RFC 3339 time: %r' % s)
    base = datetime.datetime.strptime(m.group(1), '%Y-%m-%dT%H:%M:%S')
    return (base.replace(tzinfo=datetime.timezone.utc).timestamp()
            + float(m.group(2) or 0))


def nova_evidence(iv):
    return [e for e in iv['evidence'] if e['witness'] == 'nova']


class ResidencyTestCase(CloudTestCase):
    """The recorders run from start.sh; the host agents (one per compute,
    sweeping every SWEEP seconds) for these tests only: an agent re-asserts
    its host's record, which other tests change on purpose."""

    agents = {}  # n: the host agent of fake-compute-n

    @classmethod
    def setUpClass(cls):
        env = cloudctl.load_env(cloud.rig)
        if not os.access(env['HOSTAGENT_BIN'], os.X_OK):
            results['residency_second_witness'] = (
                'absent: no hostagent binary at %s' % env['HOSTAGENT_BIN'])
            return
        cls.agents, logged = {}, {}
        try:
            for host, (country, orgs) in sorted(FACTS.items()):
                n = int(host.rsplit('-', 1)[1])
                logged[n] = cls.agent_log_size(n)
                cls.agents[n] = cloudctl.start_hostagent(
                    cloud.rig, n, country, orgs, '%ds' % SWEEP)
            for n in cls.agents:
                cls.wait_swept(n, logged[n])
        except BaseException:
            cls.tearDownClass()
            raise
        results['residency_second_witness'] = (
            'hostagent daemons, one per compute, --interval %ds' % SWEEP)

    @staticmethod
    def agent_log_size(n):
        try:
            return os.path.getsize(os.path.join(
                cloud.rig, 'logs', 'hostagent%d.out' % n))
        except FileNotFoundError:
            return 0

    @classmethod
    def wait_swept(cls, n, offset, timeout=60):
        """Host agent n has swept once since its log was offset long."""
        log = os.path.join(cloud.rig, 'logs', 'hostagent%d.out' % n)
        deadline = time.monotonic() + timeout
        while True:
            with open(log, errors='replace') as f:
                f.seek(offset)
                text = f.read()
            if 'compliance sweep done' in text:
                return
            if (not cloudctl.service_running(cloud.rig, 'hostagent%d' % n)
                    or time.monotonic() > deadline):
                raise AssertionError('hostagent %d did not sweep:\n%s'
                                     % (n, text[-3000:]))
            time.sleep(0.3)

    @classmethod
    def tearDownClass(cls):
        for n, proc in cls.agents.items():
            cloudctl.stop_service(cloud.rig, 'hostagent%d' % n)
            proc.poll()  # reaped by stop_service
        cls.agents = {}

    # --- the report
    def ledgerctl(self, *args, ok=(0,)):
        res = cloudctl.ledgerctl(cloud.rig, *args)
        if ok is not None and res.returncode not in ok:
            self.fail('ledgerctl %s: exit %d\n%s%s' % (
                ' '.join(args), res.returncode, res.stdout, res.stderr))
        return res

    def report(self, uuid, since, as_of=None, output='json'):
        args = ['residency', 'vm:' + uuid, '--from', rfc3339(since),
                '-o', output]
        if as_of is not None:
            args += ['--as-of', rfc3339(as_of)]
        res = self.ledgerctl(*args)
        return json.loads(res.stdout) if output == 'json' else res.stdout

    def settled_report(self, uuid, since, done, expected, timeout=90):
        """The report once the recorders have recorded every move: polled
        until it has the expected number of intervals and the last is
        closed (the deletion recorded), then made again as of a few seconds
        after the last action (done) and every placement it holds."""
        deadline = time.monotonic() + timeout
        while True:
            rep = self.report(uuid, since)
            nova = [iv for iv in rep['intervals'] if nova_evidence(iv)]
            if (len(nova) >= expected and nova and not nova[-1].get('open')
                    and rep['as_of'] and epoch(rep['as_of']) > done):
                break
            if time.monotonic() > deadline:
                self.fail('%s: the report has %d of %d intervals, the last '
                          '%s, after %ds:\n%s' % (
                              uuid, len(nova), expected,
                              'open' if nova and nova[-1].get('open')
                              else 'closed', timeout,
                              json.dumps(rep, indent=1)[-4000:]))
            time.sleep(1)
        recorded = [epoch(e['recorded_at']) for iv in rep['intervals']
                    for e in iv['evidence']]
        as_of = max([done + 3] + [t + 0.5 for t in recorded])
        while time.time() < as_of + 1:
            time.sleep(0.2)
        return self.report(uuid, since, as_of)

    def placements(self, uuid, since, witness='nova'):
        """A VM's placements of one witness since a time, as filterd's
        ledger holds them (GET /v1/placements), in time order."""
        status, _, raw = cloud.filterd.request(
            'GET', '/v1/placements?vm=%s&from=%s' % (uuid, rfc3339(since)),
            token=cloud.filterd.token)
        self.assertEqual(200, status, raw)
        return [p for p in json.loads(raw)['placements']
                if p['witness'] == witness]

    def assert_placements(self, uuid, since, ops):
        """Nova's placements of the VM are exactly ops, in order, each once
        (one reference, one Nova message, each)."""
        got = self.placements(uuid, since)
        self.assertEqual(len(ops), len(got), json.dumps(got, indent=1))
        for want, p in zip(ops, got):
            self.assertIn(p['op'], want if isinstance(want, tuple)
                          else (want,), p)
        refs = [p['ref'] for p in got]
        self.assertEqual(len(refs), len(set(refs)), 'a placement twice')
        return got

    def assert_intervals(self, rep, moves):
        """The report's intervals are exactly the moves, [(host, ops,
        violation)], in order, each on Nova's word once (a cold migration
        twice: instance.resize_finish.end on the destination and
        instance.resize_confirm.end), closed by the deletion; with the host
        agents running, each that lasted longer than a sweep also on the
        host agent's word (a sighting on its host since the VM's previous
        move)."""
        ivs = rep['intervals']
        got = [(iv['host'], iv['op'], bool(iv.get('violation')))
               for iv in ivs]
        want = [(h, ops, v) for h, ops, v in moves]
        self.assertEqual(len(want), len(got), json.dumps(ivs, indent=1))
        for (host, ops, violation), (gh, gop, gv), iv in zip(want, got, ivs):
            self.assertEqual((host, violation), (gh, gv), iv)
            self.assertIn(gop, ops, iv)
            self.assertEqual(violation, not iv['verdict']['allowed'], iv)
            self.assertEqual(2 if gop in COLD else 1,
                             len(nova_evidence(iv)), iv)
        refs = [e['ref'] for iv in ivs for e in nova_evidence(iv)]
        self.assertEqual(len(refs), len(set(refs)), 'a placement twice')
        self.assertFalse(ivs[-1].get('open'), 'the deletion is not recorded')
        if not self.agents:
            return
        for k, iv in enumerate(ivs):
            start, end = epoch(iv['from']), epoch(iv['to'])
            if end - start <= SWEEP:
                continue
            after = epoch(ivs[k - 1]['from']) if k else 0
            sightings = [e for e in iv['evidence']
                         if e['witness'] == 'hostagent' and
                         e['op'] == 'observed' and
                         after < epoch(e['at']) < end]
            self.assertIn('hostagent', iv['witnesses'], iv)
            self.assertTrue(sightings, 'interval %d on %s (%.1fs): no '
                            'sighting of the host agent in it: %s'
                            % (k, iv['host'], end - start, iv))
        self.assertEqual(0, rep['discrepancies'],
                         json.dumps(rep['intervals'], indent=1))

    def wait_host(self, uuid, host, timeout=120):
        return self.api.wait(uuid, lambda s: self.api.host_of(s) == host and
                             s['OS-EXT-STS:task_state'] is None, timeout)


class TestResidency(ResidencyTestCase):

    def test_a_vms_life_is_on_the_ledger_and_the_report_verifies(self):
        since = time.time() - 1
        uuid, a = self.boot()
        b = self.other_allowed(a)
        moves = [(a, ('boot',), False)]
        time.sleep(HOLD)

        status, doc, _ = self.api.action(uuid, {'os-migrateLive': {
            'host': b, 'block_migration': 'auto'}}, '2.30')
        self.assertEqual(202, status, doc)
        self.wait_host(uuid, b)
        moves.append((b, ('live_migration',), False))
        time.sleep(HOLD)

        status, doc, _ = self.api.action(uuid, {'migrate': {'host': a}},
                                         '2.56')
        self.assertEqual(202, status, doc)
        self.api.wait(uuid, lambda s: s['status'] == 'VERIFY_RESIZE', 120)
        self.assertEqual(204, self.api.action(
            uuid, {'confirmResize': None})[0])
        self.api.wait(uuid, lambda s: s['status'] == 'ACTIVE' and
                      s['OS-EXT-STS:task_state'] is None, 60)
        moves.append((a, COLD, False))
        time.sleep(HOLD)

        # Past the scheduler: forced, at 2.30, through the nova-api without
        # ledgerfence's guard, to the host the regulation forbids.
        status, doc, _ = self.api.action(uuid, {'os-migrateLive': {
            'host': DENIED, 'block_migration': 'auto', 'force': True}},
            '2.30')
        self.assertEqual(202, status, doc)
        self.wait_host(uuid, DENIED)
        moves.append((DENIED, ('live_migration',), True))
        time.sleep(HOLD)

        status, doc, _ = self.api.action(uuid, {'shelve': None})
        self.assertEqual(202, status, doc)
        self.api.wait(uuid, lambda s: s['status'] == 'SHELVED_OFFLOADED' and
                      s['OS-EXT-STS:task_state'] is None and
                      self.api.host_of(s) is None, 120)
        time.sleep(HOLD)
        status, doc, _ = self.api.action(uuid, {'unshelve': None}, '2.91')
        self.assertEqual(202, status, doc)
        server = self.api.wait(uuid, lambda s: s['status'] == 'ACTIVE' and
                               s['OS-EXT-STS:task_state'] is None, 120)
        c = self.api.host_of(server)
        self.assertIn(c, ALLOWED)
        moves.append((c, ('unshelve',), False))
        time.sleep(HOLD)
        self.api.delete(uuid)
        done = time.time()

        rep = self.settled_report(uuid, since, done, len(moves))
        self.assert_placements(uuid, since, [
            'boot', 'live_migration', COLD, COLD, 'live_migration',
            'shelve_offload', 'unshelve', 'delete'])
        results['residency_intervals'] = len(rep['intervals'])
        self.assert_intervals(rep, moves)
        self.assertEqual(1, rep['violations'])
        forced = rep['intervals'][3]
        self.assertEqual('country_not_allowed', forced['verdict']['reason'],
                         forced)

        # verify: the report as made passes; with one host changed, fails.
        work = tempfile.mkdtemp(prefix='residency-', dir=cloud.rig)
        good = os.path.join(work, 'report.json')
        with open(good, 'w') as f:
            json.dump(rep, f)
        t0 = time.monotonic()
        res = self.ledgerctl('residency', 'verify', good)
        results['residency_verify_seconds'] = round(time.monotonic() - t0, 2)
        self.assertIn('verified', res.stdout)
        edited = dict(rep, intervals=[dict(iv) for iv in rep['intervals']])
        edited['intervals'][0]['host'] = b
        bad = os.path.join(work, 'edited.json')
        with open(bad, 'w') as f:
            json.dump(edited, f)
        res = self.ledgerctl('residency', 'verify', bad, ok=None)
        self.assertEqual(3, res.returncode, res.stdout + res.stderr)

        # The same report as a page (both kept as artifacts), and through
        # filterd's REST API.
        page = self.report(uuid, since, epoch(rep['as_of']), output='html')
        self.assertIn('<html', page.lower())
        out = os.environ.get('LEDGERFENCE_NOVA_RESULTS')
        if out:
            out = os.path.join(out, 'residency')
            os.makedirs(out, exist_ok=True)
            shutil.copy(good, os.path.join(out, 'report.json'))
            with open(os.path.join(out, 'report.html'), 'w') as f:
                f.write(page)
        for text in (uuid, a, b, DENIED, 'country_not_allowed'):
            self.assertIn(text, page)
        status, _, raw = cloud.filterd.request(
            'GET', '/v1/residency/vm/%s?from=%s&to=%s' % (
                uuid, rfc3339(since), rep['to']), token=cloud.filterd.token)
        self.assertEqual(200, status, raw)
        served = json.loads(raw)
        key = ('host', 'op', 'from', 'to', 'violation')
        self.assertEqual([[iv.get(k) for k in key] for iv in rep['intervals']],
                         [[iv.get(k) for k in key]
                          for iv in served['intervals']])


class TestResidencyRobustness(ResidencyTestCase):

    VMS = 4

    def test_no_placement_lost_or_doubled(self):
        """A burst of moves while a recorder is killed and started again,
        then the broker restarted: every VM's intervals once each."""
        since = time.time() - 1
        uuids = [self.api.create('burst-%d' % i) for i in range(self.VMS)]
        self.servers.extend(uuids)
        disturbed.update(uuids)
        hosts = {}
        for uuid in uuids:
            server = self.api.wait(uuid, lambda s: s['status'] in (
                'ACTIVE', 'ERROR') and s['OS-EXT-STS:task_state'] is None)
            self.assertEqual('ACTIVE', server['status'], server.get('fault'))
            hosts[uuid] = self.api.host_of(server)
        time.sleep(HOLD)

        # Live migrations of every VM. Recorder 1 is frozen after the
        # second request, so that the broker's deliveries to it wait
        # unacknowledged, and killed once it holds some: the broker gives
        # them to recorder 2. It is started again once the moves are done.
        self.addCleanup(self.recorder_back, 1)
        for i, uuid in enumerate(uuids):
            status, doc, _ = self.api.action(uuid, {'os-migrateLive': {
                'host': self.other_allowed(hosts[uuid]),
                'block_migration': 'auto'}}, '2.30')
            self.assertEqual(202, status, doc)
            if i == 1:
                cloudctl.signal_service(cloud.rig, 'recorder1',
                                        signal.SIGSTOP)
        unacked = 0
        deadline = time.monotonic() + 60
        while unacked == 0 and time.monotonic() < deadline:
            unacked = cloudctl.queue(cloud.rig)[1]
            time.sleep(0.2)
        cloudctl.stop_service(cloud.rig, 'recorder1')
        results['recorder_killed_holding_unacked'] = unacked
        self.assertGreater(unacked, 0, 'recorder 1 was given nothing to '
                           'hold before it was killed')
        for uuid in uuids:
            self.wait_host(uuid, self.other_allowed(hosts[uuid]))
        self.recorder_back(1)
        self.wait_drained()
        time.sleep(HOLD)

        # The broker restarted; once both recorders consume again (and
        # Nova's services, whose queues are not durable), the VMs are
        # deleted.
        t0 = time.monotonic()
        restarted.append(cloudctl.restart_rabbitmq(cloud.rig))
        self.wait_drained(timeout=120)
        results['rabbitmq_restart_to_recorders_back_seconds'] = round(
            time.monotonic() - t0, 1)
        self.wait_nova_consumes()
        for uuid in uuids:
            self.wait_deleted(uuid)
        done = time.time()
        self.wait_drained()

        refs = []
        for uuid in uuids:
            rep = self.settled_report(uuid, since, done, 2)
            self.assert_placements(uuid, since,
                                   ['boot', 'live_migration', 'delete'])
            self.assert_intervals(rep, [
                (hosts[uuid], ('boot',), False),
                (self.other_allowed(hosts[uuid]), ('live_migration',),
                 False)])
            refs += [e['ref'] for iv in rep['intervals']
                     for e in nova_evidence(iv)]
        self.assertEqual(len(refs), len(set(refs)), 'a placement twice')
        self.assertEqual(2 * self.VMS, len(refs))

    def recorder_back(self, n):
        if not cloudctl.service_running(cloud.rig, 'recorder%d' % n):
            restarted.append(cloudctl.start_recorder(cloud.rig, n))
        cloudctl.wait_recorders(cloud.rig, 60, (n,))

    def wait_drained(self, timeout=60):
        """The recorders' queue is empty, nothing unacknowledged, both
        replicas consuming and connected."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                q = cloudctl.queue(cloud.rig)
            except AssertionError:
                q = None
            connected = [cloudctl.recorder_metric(
                cloud.rig, n, 'ledgerfence_recorder_connected')
                for n in (1, 2)]
            if q == (0, 0, 2) and connected == [1, 1]:
                return
            if time.monotonic() > deadline:
                self.fail('the recorders\' queue: %s (ready, unacked, '
                          'consumers), connected %s' % (q, connected))
            time.sleep(0.5)

    def wait_nova_consumes(self, timeout=120):
        names = ['conductor', 'scheduler'] + ['compute.' + h for h in FACTS]
        deadline = time.monotonic() + timeout
        while True:
            qs = cloudctl.queues(cloud.rig)
            missing = [n for n in names if qs.get(n, (0, 0, 0))[2] < 1]
            if not missing:
                return
            if time.monotonic() > deadline:
                self.fail('Nova\'s queues without a consumer after the '
                          'broker restarted: %s' % missing)
            time.sleep(0.5)

    def wait_deleted(self, uuid, timeout=120):
        """DELETE, tried again while nova-api finds the broker gone."""
        deadline = time.monotonic() + timeout
        while True:
            status, _, _ = self.api.call('DELETE', '/servers/%s' % uuid)
            if status in (204, 404):
                break
            if time.monotonic() > deadline:
                self.fail('DELETE %s: HTTP %d' % (uuid, status))
            time.sleep(1)
        self.api.delete(uuid)


if __name__ == '__main__':
    unittest.main()
