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
that skips the scheduler, and the nova-api guard that closes it. Run from
tests/integration/nova with /usr/bin/python3 -m unittest -v cloud.test_cloud.
The tests start the cloud in a temporary directory and stop it, unless
LEDGERFENCE_NOVA_RIG names a running one.
"""

import json
import os
import shutil
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
    print('\nmini cloud figures: %s' % json.dumps(results), file=sys.stderr)
    out = os.environ.get('LEDGERFENCE_NOVA_RESULTS')
    if out:
        with open(os.path.join(out, 'cloud.json'), 'w') as f:
            json.dump(results, f, indent=1)
    cloud.close()


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
        # shelved_offload_time = 0: offloaded at once, on no host.
        server = self.api.wait(
            uuid, lambda s: s['status'] == 'SHELVED_OFFLOADED' and
            s['OS-EXT-STS:task_state'] is None, 120)
        self.assertIsNone(self.api.host_of(server))

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


if __name__ == '__main__':
    unittest.main()
