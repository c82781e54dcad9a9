"""Secrets never appear in results, diffs, warnings or -vvv output, on success and on failure.

Every module of the collection (ad_group_writeback, entra_group_info, cloudsync_permissions,
prereq_facts) runs through ansible-playbook at -vvv with the bind password, the client secret,
the certificate password and the WinRM password supplied from the environment (the options'
environment fallbacks, as an AWX credential injects them; winrm_password has no fallback, so the
play reads it with lookup('env')). The playbook text holds no secret, so any copy in the output,
in a registered result or in the saved results is one the collection leaked. Each secret is
random per run and used in a success run (the right values) and a failure run (wrong values).
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import json
import urllib.parse
import uuid

import pytest

from emulator.fixtures import CLIENT_ID, TenantBuilder
from writeback_helpers import Directory, run_playbook


def secret(kind):
    # Characters that survive no escaping unchanged: a leak through URL- or JSON-encoding shows too.
    return 'S3cret-%s-%s!&"\\\'%%' % (kind, uuid.uuid4().hex[:12])


def encrypted_certificate(emu, path, password):
    """The emulator app's client certificate with its key encrypted by ``password`` (one PEM file)."""
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(open(emu.client_key_file, 'rb').read(), password=None)
    pem = open(emu.client_cert_file, 'rb').read() + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(password.encode()))
    path.write_bytes(pem)
    return str(path)


def forms(value):
    """The secret as it could leak: raw, JSON-escaped, URL-encoded, base64."""
    return set([value, json.dumps(value)[1:-1], urllib.parse.quote(value, safe=''), urllib.parse.quote_plus(value),
                base64.b64encode(value.encode()).decode()])


def leaks(text, secrets):
    return sorted(name for name, value in secrets.items() for form in forms(value) if form in text)


@pytest.fixture
def world(corp, graph_emulator_factory, winrm_endpoint_factory, tmp_path):
    """A tenant seeded from the lab's users, with a random client secret on the standard app; a WinRM
    agent host with a random password; a sandbox OU."""
    secrets = {'client_secret': secret('client'), 'certificate_password': secret('cert'),
               'winrm_password': secret('winrm'), 'bind_password': corp.admin_password}
    b = TenantBuilder(onprem_domain=corp.dns_domain)
    users = [b.synced_user(i['sam_account_name'], object_guid=i['object_guid'], object_sid=i['object_sid'], dn=i['dn'],
                           domain=i['domain'], upn=i['user_principal_name'], immutable_id=i['immutable_id'])
             for i in corp.identities[:4]]
    b.group('Secrets group', members=users)
    tenant = b.build()
    for app in tenant['apps']:
        if app['client_id'] == CLIENT_ID:
            app['secrets'] = [secrets['client_secret']]
    emu = graph_emulator_factory(tenant, settings={'throttle_enabled': False})
    endpoint = winrm_endpoint_factory(users={'agent-admin': secrets['winrm_password']})
    cert = encrypted_certificate(emu, tmp_path / 'client-encrypted.pem', secrets['certificate_password'])
    directory = Directory(corp)
    ou = directory.make_ou('t-secrets-%s' % uuid.uuid4().hex[:8])
    yield dict(corp=corp, emu=emu, endpoint=endpoint, cert=cert, ou=ou, secrets=secrets)
    directory.remove_tree(ou)
    directory.close()


def environment(w, wrong=False):
    corp, emu, s = w['corp'], w['emu'], dict(w['secrets'])
    if wrong:
        s = dict((k, secret('wrong-' + k)) for k in s)
    env = {
        'CLOUDSYNC_AD_SERVERS': corp.ip, 'CLOUDSYNC_AD_CA_FILE': corp.ca_file, 'CLOUDSYNC_AD_USER': corp.admin_upn,
        'CLOUDSYNC_AD_PASSWORD': s['bind_password'],
        'AZURE_TENANT_ID': emu.tenant_id, 'AZURE_CLIENT_ID': emu.client_id, 'AZURE_CLIENT_SECRET': s['client_secret'],
        'AZURE_CLIENT_CERTIFICATE_PASSWORD': s['certificate_password'], 'AZURE_AUTHORITY_HOST': emu.authority_url,
        'CLOUDSYNC_GRAPH_ENDPOINT': emu.base_url, 'CLOUDSYNC_GRAPH_CA_BUNDLE': emu.ca_file,
        'CLOUDSYNC_TEST_WINRM_PASSWORD': s['winrm_password'],
    }
    return env, s


def playbook(w, certificate=False):
    endpoint, ou = w['endpoint'], w['ou']
    winrm = {'agent_host': endpoint.host, 'winrm_user': endpoint.user, 'winrm_transport': 'basic', 'winrm_port': endpoint.port,
             'winrm_ca_file': endpoint.ca_file, 'winrm_password': "{{ lookup('env', 'CLOUDSYNC_TEST_WINRM_PASSWORD') }}"}
    tasks = [
        ('writeback_graph', 'ad_group_writeback', {'all_groups': True, 'target_ou': ou, 'search_base': ou}, {'diff': True}),
        ('writeback_drift', 'ad_group_writeback', {'all_groups': True, 'target_ou': ou, 'search_base': ou},
         {'diff': True, 'check_mode': True}),
        ('writeback_ad_only', 'ad_group_writeback', {'entra_groups': [], 'target_ou': ou, 'search_base': ou}, {}),
        ('info_secret', 'entra_group_info', {'all_groups': True, 'members': 'direct', 'auth_method': 'client_secret'}, {}),
        ('permissions', 'cloudsync_permissions', {'principal': 'svc-writeback', 'targets': [ou], 'state': 'present'},
         {'check_mode': True, 'diff': True}),
        ('prereqs', 'prereq_facts', dict(winrm, target_ous=[ou]), {}),
    ]
    if certificate:  # its own play: the client secret fallback and a certificate are mutually exclusive
        tasks = [('info_certificate', 'entra_group_info', {'all_groups': True, 'auth_method': 'certificate',
                                                           'client_certificate_path': w['cert']}, {})]
    out = []
    for name, module, args, keywords in tasks:
        task = {'name': name, 'hybrid_identity.cloud_sync.' + module: args, 'register': 'r_' + name, 'ignore_errors': True}
        task.update(keywords)
        out.append(task)
    names = [t['name'] for t in out]
    out.append({'name': 'save', 'check_mode': False, 'ansible.builtin.copy': {
        'content': '{{ {%s} | to_json }}' % ', '.join("'%s': r_%s" % (n, n) for n in names),
        'dest': '{results}', 'mode': '0600'}})
    return json.dumps([{'hosts': 'localhost', 'gather_facts': False, 'tasks': out}]), names


def run_verbose(world, tmp_path, env, certificate=False):
    play, names = playbook(world, certificate=certificate)
    run_dir = tmp_path / ('certificate' if certificate else 'main')
    run_dir.mkdir()
    if certificate:
        env = dict((k, v) for k, v in env.items() if k != 'AZURE_CLIENT_SECRET')
    rc, output, saved = run_playbook(play, run_dir, extra_args=['-vvv'], env=env)
    assert saved is not None, output[-4000:]
    assert 'ESTABLISH LOCAL CONNECTION' in output, 'not the verbose output'
    return play, names, output + (run_dir / 'results.json').read_text(), saved


@pytest.mark.parametrize('path', ['success', 'failure'])
def test_no_secret_in_results_diffs_warnings_or_vvv_output(world, tmp_path, path):
    env, secrets = environment(world, wrong=(path == 'failure'))
    play, names, output, saved = run_verbose(world, tmp_path, env)
    cert_play, cert_names, cert_output, cert_saved = run_verbose(world, tmp_path, env, certificate=True)
    assert not leaks(play + cert_play, secrets), 'the playbook itself must hold no secret'
    saved.update(cert_saved)
    names += cert_names
    statuses = dict((n, bool(saved[n].get('failed'))) for n in names)
    if path == 'success':
        assert statuses == dict((n, False) for n in names), dict((n, saved[n].get('msg')) for n in names if saved[n].get('failed'))
        assert saved['writeback_graph']['summary']['created'] == 1
        assert saved['writeback_graph'].get('diff'), 'diff mode output is part of what is searched'
        assert saved['info_certificate']['groups'], 'the certificate (with its password) was used'
        prereq_checks = dict((c['name'], c) for c in saved['prereqs']['ansible_facts']['cloudsync_prereqs']['checks'])
        assert prereq_checks['ad_connection']['ok'] is True
    else:
        failing = ['writeback_graph', 'writeback_drift', 'writeback_ad_only', 'info_secret', 'info_certificate', 'permissions']
        assert all(statuses[n] for n in failing), statuses
        assert 'password' in saved['info_certificate']['msg'].lower()
        checks = saved['prereqs']['ansible_facts']['cloudsync_prereqs']['checks']
        assert [c for c in checks if c['ok'] is False], 'wrong credentials must fail some prerequisite checks'
    assert leaks(output + cert_output, secrets) == [], 'a secret appears in the -vvv output or the saved results'
    assert leaks(json.dumps(saved), secrets) == [], 'a secret appears in a registered result'
