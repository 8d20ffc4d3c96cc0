"""The devstack plugin's phases, run against stand-ins of devstack's own
functions (devstack/devstack_stubs.sh), with real builds and a real filterd:

    /usr/bin/python3 -m unittest -v l1.test_devstack_plugin

install builds the binaries, post-config writes a nova.conf that Nova's own
configuration and filter loader accept, extra runs filterd and one hostagent
per fake compute, unstack stops them and clean removes what install made.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import filterd as lf  # noqa: E402

STUBS = os.path.join(os.path.dirname(HERE), 'devstack', 'devstack_stubs.sh')
PLUGIN = os.path.join(lf.REPO, 'devstack-plugin', 'devstack')

NOVA_LOADS = """
import sys
import nova.conf
from nova import config, objects
objects.register_all()
config.parse_args(['nova-scheduler', '--config-file', sys.argv[1]],
                  default_config_files=[], init_rpc=False,
                  configure_db=False)
from nova.scheduler import filters
CONF = nova.conf.CONF
names = {c.__name__ for c in filters.HostFilterHandler().get_matching_classes(
    CONF.filter_scheduler.available_filters)}
missing = [f for f in CONF.filter_scheduler.enabled_filters if f not in names]
print('missing=%s url=%s fail_open=%s' % (','.join(missing),
      ','.join(CONF.ledgerfence.url or ()), CONF.ledgerfence.fail_open))
"""


class TestDevstackPlugin(unittest.TestCase):
    """The embedded ledger (the default)."""

    LEDGER = {}

    @classmethod
    def setUpClass(cls):
        if not shutil.which('go') and not os.path.exists(
                '/usr/local/go/bin/go'):
            lf.unavailable(lf.Unavailable('no Go toolchain'))
        cls.tmp = tempfile.mkdtemp(prefix='ledgerfence-devstack-')
        cls.port = lf.free_port()
        cls.nova_conf = os.path.join(cls.tmp, 'nova.conf')
        with open(cls.nova_conf, 'w') as f:
            f.write('[DEFAULT]\ntransport_url = fake://\n'
                    '[filter_scheduler]\nenabled_filters = '
                    'ComputeFilter,ImagePropertiesFilter\n')
        cls.env = dict(
            os.environ,
            PATH='/usr/local/go/bin:' + os.environ.get('PATH', ''),
            STUB_DIR=os.path.join(cls.tmp, 'stub'),
            DEST=os.path.join(cls.tmp, 'dest'),
            DATA_DIR=os.path.join(cls.tmp, 'data'),
            LEDGERFENCE_DIR=lf.REPO,
            LEDGERFENCE_BIN_DIR=os.path.join(cls.tmp, 'bin'),
            ENABLED_SERVICES='n-sch,n-cpu,ledgerfence-filterd,'
                             'ledgerfence-hostagent',
            NOVA_CONF=cls.nova_conf, NOVA_CPU_CONF=cls.nova_conf,
            NOVA_FILTERS='ComputeFilter',
            VIRT_DRIVER='fake', NUMBER_FAKE_NOVA_COMPUTE='3',
            HOSTNAME='devstack', SERVICE_HOST='127.0.0.1',
            REGION_NAME='RegionOne',
            LEDGERFENCE_PORT=str(cls.port),
            LEDGERFENCE_HOST_COUNTRY='JP',
            LEDGERFENCE_HOST_ORGANIZATIONS='CompanyA,CompanyB',
            LEDGERFENCE_HOST_COUNTRY_3='DE',
            LEDGERFENCE_HOST_ORGANIZATIONS_3='CompanyA',
            # No clouds.yaml here: the hostagents only keep their records.
            LEDGERFENCE_HOSTAGENT_SWEEP='False')
        cls.env.update(cls.ledger_env())
        os.makedirs(cls.env['STUB_DIR'])
        cls.phase('stack', 'install')
        cls.phase('stack', 'post-config')

    @classmethod
    def ledger_env(cls):
        return {}

    @classmethod
    def tearDownClass(cls):
        cls.phase('unstack', check=False)
        cls.phase('clean', check=False)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def phase(cls, *args, check=True, env=None):
        script = ('set -e; . "$1"; . "$2/settings"; shift 2; '
                  '. "$PLUGIN_DIR/plugin.sh" "$@"')
        env = dict(env or cls.env, PLUGIN_DIR=PLUGIN)
        res = subprocess.run(['bash', '-c', script, 'phase', STUBS, PLUGIN]
                             + list(args), env=env, capture_output=True,
                             text=True, timeout=900)
        if check and res.returncode != 0:
            raise AssertionError('plugin.sh %s: exit %d\n%s'
                                 % (' '.join(args), res.returncode,
                                    res.stderr[-3000:]))
        return res

    def calls(self):
        with open(os.path.join(self.env['STUB_DIR'], 'calls')) as f:
            return f.read().splitlines()

    def ini(self, cmd, section, option):
        out = subprocess.run(
            ['/usr/bin/python3', os.path.join(os.path.dirname(STUBS),
                                              'ini.py'),
             cmd, self.nova_conf, section, option],
            capture_output=True, text=True, check=True).stdout
        return out.strip().splitlines()

    def test_1_install_builds_the_binaries_and_the_filter(self):
        for cmd in ('filterd', 'hostagent', 'ledgerctl'):
            path = os.path.join(self.env['LEDGERFENCE_BIN_DIR'], cmd)
            self.assertTrue(os.access(path, os.X_OK), path)
        self.assertIn('pip_install %s/devstack-plugin' % lf.REPO,
                      self.calls())

    def test_2_post_config_loads_the_filter_in_nova(self):
        self.assertEqual(['nova.scheduler.filters.all_filters',
                          'ledgerfence_nova.filter.LedgerfenceFilter'],
                         self.ini('getmulti', 'filter_scheduler',
                                  'available_filters'))
        self.assertEqual(['ComputeFilter,ImagePropertiesFilter,'
                          'LedgerfenceFilter'],
                         self.ini('get', 'filter_scheduler',
                                  'enabled_filters'))
        # Twice is the same as once.
        self.phase('stack', 'post-config')
        self.assertEqual(2, len(self.ini('getmulti', 'filter_scheduler',
                                         'available_filters')))
        res = subprocess.run(['/usr/bin/python3', '-c', NOVA_LOADS,
                              self.nova_conf], capture_output=True,
                             text=True, env=dict(
                                 os.environ, PYTHONPATH=os.path.join(
                                     lf.REPO, 'devstack-plugin')))
        self.assertEqual(0, res.returncode, res.stderr[-2000:])
        self.assertIn('missing= url=http://127.0.0.1:%d/scheduler/nova/'
                      'external fail_open=False' % self.port, res.stdout)
        token = os.path.join(self.env['DATA_DIR'], 'ledgerfence',
                             'admin-token')
        self.assertEqual(0o600, stat.S_IMODE(os.stat(token).st_mode))

    def test_2_post_config_writes_the_filter_options(self):
        conf = os.path.join(self.tmp, 'nova-tls.conf')
        with open(conf, 'w') as f:
            f.write('[DEFAULT]\ntransport_url = fake://\n')
        urls = ('https://filterd-a.example:8787/scheduler/nova/external,'
                'https://filterd-b.example:8787/scheduler/nova/external')
        env = dict(self.env, NOVA_CONF=conf, LEDGERFENCE_FILTER_URLS=urls,
                   LEDGERFENCE_CONNECT_TIMEOUT='0.25',
                   LEDGERFENCE_CA_FILE='/etc/ledgerfence/ca.pem',
                   LEDGERFENCE_CERT_FILE='/etc/ledgerfence/nova.pem',
                   LEDGERFENCE_KEY_FILE='/etc/ledgerfence/nova.key')
        self.phase('stack', 'post-config', env=env)
        got = {}
        for opt in ('url', 'timeout', 'connect_timeout', 'fail_open',
                    'ca_file', 'cert_file', 'key_file', 'token'):
            out = subprocess.run(
                ['/usr/bin/python3', os.path.join(os.path.dirname(STUBS),
                                                  'ini.py'),
                 'get', conf, 'ledgerfence', opt],
                capture_output=True, text=True, check=True).stdout.strip()
            got[opt] = out
        self.assertEqual({'url': urls, 'timeout': '2',
                          'connect_timeout': '0.25', 'fail_open': 'False',
                          'ca_file': '/etc/ledgerfence/ca.pem',
                          'cert_file': '/etc/ledgerfence/nova.pem',
                          'key_file': '/etc/ledgerfence/nova.key',
                          'token': ''}, got)
        # The defaults: one URL, this node's filterd; no TLS files.
        self.assertEqual(
            ['http://127.0.0.1:%d/scheduler/nova/external' % self.port],
            self.ini('get', 'ledgerfence', 'url'))
        self.assertEqual(['0.5'],
                         self.ini('get', 'ledgerfence', 'connect_timeout'))
        self.assertEqual([], self.ini('get', 'ledgerfence', 'cert_file'))
        # Nova reads the list.
        res = subprocess.run(['/usr/bin/python3', '-c', NOVA_LOADS, conf],
                             capture_output=True, text=True, env=dict(
                                 os.environ, PYTHONPATH=os.path.join(
                                     lf.REPO, 'devstack-plugin')))
        self.assertEqual(0, res.returncode, res.stderr[-2000:])
        self.assertIn('url=%s fail_open=False' % urls, res.stdout)

    def test_3_extra_runs_filterd_and_a_hostagent_per_compute(self):
        self.phase('stack', 'extra')
        with urllib.request.urlopen(
                'http://127.0.0.1:%d/readyz' % self.port, timeout=5) as r:
            self.assertEqual(200, r.status)
        runs = [c.split()[1] for c in self.calls()
                if c.startswith('run_process ')]
        self.assertEqual(['ledgerfence-filterd', 'ledgerfence-hostagent-1',
                          'ledgerfence-hostagent-2',
                          'ledgerfence-hostagent-3'], runs)
        data = os.path.join(self.env['DATA_DIR'], 'ledgerfence')
        with open(os.path.join(data, 'hostagent-3.sh')) as f:
            launcher = f.read()
        for word in ('--host devstack3', '--country DE',
                     '--organization CompanyA ', '--region RegionOne',
                     self.hostagent_ledger()):
            self.assertIn(word, launcher)
        with open(os.path.join(data, 'hostagent-1.sh')) as f:
            self.assertIn('--organization CompanyA\\,CompanyB', f.read())
        # The admin token is not in the unit command.
        with open(os.path.join(data, 'admin-token')) as f:
            token = f.read().strip()
        self.assertNotIn(token, '\n'.join(self.calls()))
        self.check_rest_write(token)
        # Each hostagent registers its fake compute's facts.
        want = {'devstack1': ('JP', ['CompanyA', 'CompanyB']),
                'devstack2': ('JP', ['CompanyA', 'CompanyB']),
                'devstack3': ('DE', ['CompanyA'])}
        deadline = time.monotonic() + 60
        got, writers = {}, {}
        while time.monotonic() < deadline and got != want:
            for host in want:
                try:
                    with urllib.request.urlopen(
                            'http://127.0.0.1:%d/v1/hosts/%s'
                            % (self.port, host), timeout=5) as r:
                        doc = json.load(r)
                    got[host] = (doc['country'],
                                 sorted(doc['organizations']))
                    writers[host] = doc['writer']
                except OSError:
                    pass
            time.sleep(0.5)
        self.assertEqual(want, got)
        for host in want:
            self.check_writer(host, writers[host])
        # The admin token is in no hostagent's launcher.
        for n in (1, 2, 3):
            with open(os.path.join(data, 'hostagent-%d.sh' % n)) as f:
                self.assertNotIn(token, f.read())

    def check_writer(self, host, writer):
        """Each hostagent writes with its own token, bound to its host."""
        self.assertEqual({'id': 'hostagent-' + host, 'role': 'hostagent'},
                         writer)

    def hostagent_ledger(self):
        return '--ledger http://127.0.0.1:%d' % self.port

    def check_rest_write(self, token):
        """The embedded ledger takes writes with the admin token."""
        self.assertEqual(200, self.put_host('devstack9', token))

    def put_host(self, host, token):
        req = urllib.request.Request(
            'http://127.0.0.1:%d/v1/hosts/%s' % (self.port, host),
            method='PUT', data=json.dumps(
                {'country': 'JP', 'organizations': ['CompanyA']}).encode(),
            headers={'Authorization': 'Bearer ' + token,
                     'Content-Type': 'application/json'})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def test_4_unstack_stops_and_clean_removes(self):
        self.phase('unstack')
        stops = [c.split()[1] for c in self.calls()
                 if c.startswith('stop_process ')]
        self.assertEqual(['ledgerfence-hostagent-1', 'ledgerfence-hostagent-2',
                          'ledgerfence-hostagent-3', 'ledgerfence-filterd'],
                         stops)
        # filterd stops serving once it has had the signal; allow it the
        # moment its shutdown takes on a loaded machine.
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(
                    'http://127.0.0.1:%d/readyz' % self.port, timeout=2)
            except OSError:
                break
            self.assertLess(time.monotonic(), deadline,
                            'filterd still serves 15 s after unstack')
            time.sleep(0.2)
        self.phase('clean')
        self.assertFalse(os.path.exists(self.env['LEDGERFENCE_BIN_DIR']))
        self.assertFalse(os.path.exists(
            os.path.join(self.env['DATA_DIR'], 'ledgerfence')))


class TestDevstackPluginFabric(TestDevstackPlugin):
    """LEDGERFENCE_LEDGER=fabric: the plugin starts the project's local
    Fabric network (tests/integration/fabric/network) on its own ports;
    filterd reads the ledger through it, the hostagents sign their records
    with their own Fabric identities, and filterd refuses REST writes."""

    @classmethod
    def ledger_env(cls):
        return {'LEDGERFENCE_LEDGER': 'fabric',
                'LEDGERFENCE_FABRIC_PORT_BASE': os.environ.get(
                    'LEDGERFENCE_NOVA_FABRIC_PORT_BASE', '27250')}

    def hostagent_ledger(self):
        return '--ledger fabric'

    def check_writer(self, host, writer):
        """Each hostagent signs with its own certificate, <host>agent."""
        self.assertEqual('Org1MSP', writer.get('msp'))
        self.assertIn('CN=%sagent' % host, writer.get('id', ''))
        self.assertEqual('hostagent', writer.get('role'))

    def check_rest_write(self, token):
        self.assertNotEqual(200, self.put_host('devstack9', token))
        with open(os.path.join(self.env['DATA_DIR'], 'ledgerfence',
                               'filterd.sh')) as f:
            launcher = f.read()
        self.assertIn('--ledger fabric', launcher)
        self.assertIn('LEDGERFENCE_FABRIC_PEER=', launcher)


if __name__ == '__main__':
    unittest.main()
