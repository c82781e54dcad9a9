# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs shared by every module, and a small builder to combine them.

Every module that talks to AD copies ``AD_CONNECTION_ARGSPEC`` (documented by the
``hybrid_identity.cloud_sync.ad_connection`` doc fragment); every module that talks to Graph
copies ``GRAPH_AUTH_ARGSPEC`` (documented by ``hybrid_identity.cloud_sync.graph_auth``).
Options fall back to environment variables, so a playbook or an AWX credential can set them once.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy

from ansible.module_utils.basic import AnsibleModule, env_fallback


AD_CONNECTION_ARGSPEC = dict(
    domain_controllers=dict(
        type='list', elements='str', aliases=['domain_controller', 'server'],
        fallback=(env_fallback, ['CLOUDSYNC_AD_SERVERS']),
    ),
    ad_tls_mode=dict(
        type='str', default='ldaps', choices=['ldaps', 'starttls', 'none'],
        fallback=(env_fallback, ['CLOUDSYNC_AD_TLS_MODE']),
    ),
    ad_allow_plaintext=dict(type='bool', default=False),
    ad_ca_file=dict(type='path', fallback=(env_fallback, ['CLOUDSYNC_AD_CA_FILE'])),
    ad_validate_certs=dict(
        type='bool', default=True, fallback=(env_fallback, ['CLOUDSYNC_AD_VALIDATE_CERTS']),
    ),
    ad_auth=dict(
        type='str', default='simple', choices=['simple', 'ntlm', 'kerberos'],
        fallback=(env_fallback, ['CLOUDSYNC_AD_AUTH']),
    ),
    ad_user=dict(type='str', aliases=['bind_user'], fallback=(env_fallback, ['CLOUDSYNC_AD_USER'])),
    ad_password=dict(
        type='str', no_log=True, aliases=['bind_password'],
        fallback=(env_fallback, ['CLOUDSYNC_AD_PASSWORD']),
    ),
    ad_port=dict(type='int'),
    global_catalog=dict(type='str', fallback=(env_fallback, ['CLOUDSYNC_AD_GLOBAL_CATALOG'])),
    ad_timeout=dict(type='int', default=10),
    ad_page_size=dict(type='int', default=1000),
)

GRAPH_AUTH_ARGSPEC = dict(
    tenant_id=dict(type='str', fallback=(env_fallback, ['AZURE_TENANT_ID'])),
    client_id=dict(type='str', fallback=(env_fallback, ['AZURE_CLIENT_ID'])),
    client_secret=dict(type='str', no_log=True, fallback=(env_fallback, ['AZURE_CLIENT_SECRET'])),
    client_certificate_path=dict(type='path', fallback=(env_fallback, ['AZURE_CLIENT_CERTIFICATE_PATH'])),
    client_certificate_password=dict(
        type='str', no_log=True, fallback=(env_fallback, ['AZURE_CLIENT_CERTIFICATE_PASSWORD']),
    ),
    auth_method=dict(
        type='str', default='auto',
        choices=['auto', 'client_secret', 'certificate', 'managed_identity'],
    ),
    managed_identity_client_id=dict(type='str', fallback=(env_fallback, ['CLOUDSYNC_MANAGED_IDENTITY_CLIENT_ID'])),
    cloud=dict(
        type='str', default='public', choices=['public', 'usgov', 'usgov_dod', 'china'],
        fallback=(env_fallback, ['CLOUDSYNC_AZURE_CLOUD']),
    ),
    authority_host=dict(type='str', fallback=(env_fallback, ['AZURE_AUTHORITY_HOST'])),
    graph_endpoint=dict(type='str', fallback=(env_fallback, ['CLOUDSYNC_GRAPH_ENDPOINT'])),
    graph_ca_bundle=dict(type='path', fallback=(env_fallback, ['CLOUDSYNC_GRAPH_CA_BUNDLE'])),
    graph_validate_certs=dict(type='bool', default=True),
    graph_timeout=dict(type='int', default=60),
    graph_max_retries=dict(type='int', default=5),
    graph_max_retry_wait=dict(type='int', default=120),
    graph_parallelism=dict(type='int', default=4),
)


class ArgumentSpec(object):
    """Builder for an ``AnsibleModule`` argument spec and its cross-option rules.

    ``ArgumentSpec(own_options).with_ad_connection().with_graph_auth().create_module()``
    """

    def __init__(self, argument_spec=None, mutually_exclusive=None, required_together=None,
                 required_one_of=None, required_if=None, required_by=None):
        self.argument_spec = copy.deepcopy(argument_spec or {})
        self.mutually_exclusive = list(mutually_exclusive or [])
        self.required_together = list(required_together or [])
        self.required_one_of = list(required_one_of or [])
        self.required_if = list(required_if or [])
        self.required_by = dict(required_by or {})

    def update(self, argument_spec=None, mutually_exclusive=None, required_together=None,
               required_one_of=None, required_if=None, required_by=None):
        for name, spec in (argument_spec or {}).items():
            if name in self.argument_spec:
                raise ValueError('option %s is defined twice' % name)
            self.argument_spec[name] = copy.deepcopy(spec)
        self.mutually_exclusive.extend(mutually_exclusive or [])
        self.required_together.extend(required_together or [])
        self.required_one_of.extend(required_one_of or [])
        self.required_if.extend(required_if or [])
        self.required_by.update(required_by or {})
        return self

    def with_ad_connection(self):
        return self.update(
            argument_spec=AD_CONNECTION_ARGSPEC,
            required_together=[['ad_user', 'ad_password']],
        )

    def with_graph_auth(self):
        return self.update(
            argument_spec=GRAPH_AUTH_ARGSPEC,
            # No mutual exclusion of client_secret and client_certificate_path: both may come from
            # the environment (an AWX credential), and auth_method=auto documents the choice
            # (the certificate wins).
            required_if=[
                ['auth_method', 'client_secret', ['tenant_id', 'client_id', 'client_secret']],
                ['auth_method', 'certificate', ['tenant_id', 'client_id', 'client_certificate_path']],
            ],
        )

    def create_module(self, supports_check_mode=True):
        rules = dict(
            mutually_exclusive=self.mutually_exclusive,
            required_together=self.required_together,
            required_one_of=self.required_one_of,
            required_if=self.required_if,
            required_by=self.required_by,
        )
        # Only the rules that exist: sanity's validate-modules checks each one's type.
        return AnsibleModule(
            argument_spec=self.argument_spec,
            supports_check_mode=supports_check_mode,
            **dict((name, rule) for name, rule in rules.items() if rule)
        )
