"""The ``[ledgerfence]`` section of nova.conf."""

from oslo_config import cfg
from oslo_config import types

GROUP = cfg.OptGroup(
    'ledgerfence',
    title='ledgerfence filter options',
    help='How the LedgerfenceFilter reaches filterd, the ledgerfence daemon '
         'that decides which hosts a VM may go to.')

WEBHOOK_PATH = '/scheduler/nova/external'

OPTS = [
    cfg.ListOpt(
        'url',
        item_type=types.URI(schemes=['http', 'https']),
        help='URL of filterd\'s Nova webhook, for example '
             'https://filterd.example:8787%s, or several, comma separated: '
             'replicas of filterd, asked in this order. A URL without a '
             'path gets that path. The next URL is tried only when the '
             'previous one cannot be reached (connection refused or reset, '
             'no TCP or TLS handshake within connect_timeout); an answer '
             'from a filterd, whatever it is, is final. Unset, every '
             'scheduling pass fails (closed unless fail_open).'
             % WEBHOOK_PATH),
    cfg.FloatOpt(
        'timeout',
        default=2.0,
        min=0.01,
        help='Seconds one call to filterd may take in all, every URL '
             'tried included: connecting, sending and reading the answer.'),
    cfg.FloatOpt(
        'connect_timeout',
        default=0.5,
        min=0.001,
        help='Seconds to connect to one URL (TCP and TLS handshakes) '
             'before the next is tried; never more than what is left of '
             'timeout.'),
    cfg.BoolOpt(
        'fail_open',
        default=False,
        help='What to do when filterd cannot be asked or gives an answer '
             'that cannot be trusted (timeout, no URL reachable, a TLS '
             'failure, non-2xx status, malformed body, a host that was not '
             'asked about). False (the default) removes every host, so '
             'nothing is placed or moved; True keeps every candidate host, '
             'so regulations are not enforced while filterd is '
             'unavailable.'),
    cfg.StrOpt(
        'token',
        secret=True,
        help='Bearer token sent in the Authorization header (filterd\'s '
             '--webhook-token).'),
    cfg.StrOpt(
        'ca_file',
        help='PEM file of the CA certificates that verify filterd\'s '
             'certificate for https URLs (its name must match the URL\'s '
             'host). Unset, the system CAs are used. A certificate that '
             'does not verify fails the pass (closed unless fail_open).'),
    cfg.StrOpt(
        'cert_file',
        help='PEM file of the client certificate (chain) presented to '
             'filterd, for filterd\'s --tls-client-ca (mutual TLS). It may '
             'hold the private key too.'),
    cfg.StrOpt(
        'key_file',
        help='PEM file of the private key of cert_file, when cert_file '
             'does not hold it.'),
    cfg.BoolOpt(
        'lookup_operation',
        default=True,
        help='Find the operation of each scheduling pass (live migration, '
             'cold migration, resize, evacuate, rebuild, unshelve) from the '
             'instance action in the instance\'s cell database and send it '
             'to filterd as the _nova_check_type scheduler hint. A boot '
             '(a pass without requested_destination) costs no query; a move '
             'one small query in the instance\'s cell.'),
]


def register_opts(conf):
    conf.register_group(GROUP)
    conf.register_opts(OPTS, group=GROUP)


def list_opts():
    """For oslo-config-generator (entry point oslo.config.opts)."""
    return [(GROUP, OPTS)]
