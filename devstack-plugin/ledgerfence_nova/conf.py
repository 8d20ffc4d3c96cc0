"""The ``[ledgerfence]`` section of nova.conf."""

from oslo_config import cfg

GROUP = cfg.OptGroup(
    'ledgerfence',
    title='ledgerfence filter options',
    help='How the LedgerfenceFilter reaches filterd, the ledgerfence daemon '
         'that decides which hosts a VM may go to.')

WEBHOOK_PATH = '/scheduler/nova/external'

OPTS = [
    cfg.URIOpt(
        'url',
        schemes=['http', 'https'],
        help='URL of filterd\'s Nova webhook, for example '
             'http://127.0.0.1:9480%s. A URL without a path gets that path. '
             'Unset, every scheduling pass fails (closed unless fail_open).'
             % WEBHOOK_PATH),
    cfg.FloatOpt(
        'timeout',
        default=2.0,
        min=0.01,
        help='Seconds one call to filterd may take in all: connecting, '
             'sending and reading the answer.'),
    cfg.BoolOpt(
        'fail_open',
        default=False,
        help='What to do when filterd cannot be asked or gives an answer '
             'that cannot be trusted (timeout, refused connection, non-2xx '
             'status, malformed body, a host that was not asked about). '
             'False (the default) removes every host, so nothing is placed '
             'or moved; True keeps every candidate host, so regulations are '
             'not enforced while filterd is unavailable.'),
    cfg.StrOpt(
        'token',
        secret=True,
        help='Bearer token sent in the Authorization header, when filterd '
             'requires one.'),
    cfg.StrOpt(
        'ca_file',
        help='PEM file of the CA certificates that verify filterd\'s '
             'certificate for an https url. Unset, the system CAs are used.'),
    cfg.BoolOpt(
        'lookup_operation',
        default=True,
        help='Find the operation of each scheduling pass (live migration, '
             'cold migration, resize, evacuate, rebuild, unshelve) from the '
             'instance action in the instance\'s cell database and send it '
             'to filterd as the _nova_check_type scheduler hint. Costs two '
             'small database queries per pass.'),
]


def register_opts(conf):
    conf.register_group(GROUP)
    conf.register_opts(OPTS, group=GROUP)


def list_opts():
    """For oslo-config-generator (entry point oslo.config.opts)."""
    return [(GROUP, OPTS)]
