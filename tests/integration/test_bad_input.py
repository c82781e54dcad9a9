# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad input caught early, through ansible-playbook as users run the modules: each mistake ends in a
failed task whose one-line message names the option and says what to write instead, never a Python
internals message ("'str' object has no attribute 'get'") or a traceback, and nothing is written.

- A DN given as a string to a list-of-DN option (cloudsync_permissions ``targets``, prereq_facts
  ``target_ous``): Ansible splits the string at its commas before the module sees it, so the module
  recognises the fragments and shows the list to write.
- A malformed ``entra_groups`` item (no id, members that are not a list, a member that is not one).
- A CA file that is not PEM (``ad_ca_file``, ``graph_ca_bundle``), text or DER.
- A search base that does not exist.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import uuid

import pytest

from module_runner import failure_text, run_tasks
from writeback_helpers import Directory, entra_group, entra_user

INTERNALS = ('Traceback', 'object has no attribute', 'unexpectedly', 'KeyError', 'TypeError', 'AttributeError',
             '_ssl.c', 'X509:')


@pytest.fixture
def box(corp):
    directory = Directory(corp)
    dn = directory.make_ou('t-badinput-%s' % uuid.uuid4().hex[:8])
    yield directory, dn
    directory.remove_tree(dn)
    directory.close()


def ad_args(forest, **extra):
    args = dict(domain_controllers=[forest.ip], ad_ca_file=forest.ca_file, ad_user=forest.admin_upn,
                ad_password=forest.admin_password, ad_timeout=5)
    args.update(extra)
    return args


def assert_clean_failure(name, result, words):
    msg = result.get('msg', '')
    assert result.get('failed'), (name, result)
    missing = [w for w in words if w not in msg]
    assert not missing, (name, missing, msg)
    assert '\n' not in msg.strip(), (name, msg)
    shown = failure_text(result)
    assert not [w for w in INTERNALS if w in shown], (name, shown[:2000])


def test_a_dn_given_as_a_string_to_a_list_of_dns_is_refused_with_the_list_to_write(corp, box, tmp_path):
    _directory, ou = box
    base = corp.base_dn
    cases = [
        ('targets', {'hybrid_identity.cloud_sync.cloudsync_permissions': ad_args(corp, targets=ou)},
         ['targets', 'split at its commas', "targets: ['%s']" % ou]),
        ('targets, escaped comma', {'hybrid_identity.cloud_sync.cloudsync_permissions': ad_args(
            corp, targets='OU=Sales\\, EMEA,%s' % ou)}, ['targets', 'split at its commas', 'OU=Sales\\\\, EMEA']),
        ('domain root', {'hybrid_identity.cloud_sync.cloudsync_permissions': ad_args(corp, targets=base)},
         ['targets', 'split at its commas', "targets: ['%s']" % base]),
        ('target_ous', {'hybrid_identity.cloud_sync.prereq_facts': ad_args(corp, target_ous=ou)},
         ['target_ous', 'split at its commas', "target_ous: ['%s']" % ou]),
        ('relative name', {'hybrid_identity.cloud_sync.cloudsync_permissions': ad_args(corp, targets=['OU=Cloud Groups'])},
         ['targets[0]', 'OU=Cloud Groups', 'not a distinguished name']),
    ]
    unused_rc, out, results = run_tasks(tmp_path, [task for _n, task, _w in cases])
    for (name, _task, words), result in zip(cases, results):
        assert_clean_failure(name, result, words)
    # a real list of full DNs is accepted (check mode: nothing is granted)
    unused_rc, out, results = run_tasks(tmp_path, [{'hybrid_identity.cloud_sync.cloudsync_permissions': ad_args(
        corp, targets=[ou], principal=corp.admin_upn.split('@')[0])}], check=True)
    assert not results[0].get('failed'), (results[0].get('msg'), out[-3000:])


def test_malformed_entra_groups_items_are_named(corp, box, tmp_path):
    directory, ou = box
    good = entra_group('Good', [entra_user(corp.identities[0])])
    gid = good['id']
    cases = [
        ('no id', [dict(good, id=None)], ['entra_groups[0]', 'no id', 'entra_group_info']),
        ('members a string', [good, dict(good, id=str(uuid.uuid4()), members='alice, bob')],
         ['entra_groups[1]', 'members must be a list', 'str']),
        ('member a number', [dict(good, members=[5])], ['entra_groups[0] (id %s) members[0]' % gid, '5']),
        ('member without type', [dict(good, members=[{'id': str(uuid.uuid4())}])], ['members[0]', 'no type']),
        ('display name a list', [dict(good, display_name=['x'])], ['entra_groups[0]', 'display_name must be text']),
    ]
    tasks = [{'hybrid_identity.cloud_sync.ad_group_writeback': ad_args(corp, entra_groups=groups, target_ou=ou, search_base=ou)}
             for _n, groups, _w in cases]
    unused_rc, unused_out, results = run_tasks(tmp_path, tasks)
    for (name, _g, words), result in zip(cases, results):
        assert_clean_failure(name, result, words)
    assert directory.children(ou) == [], 'a run with a malformed entra_groups item wrote something'


def test_ca_files_that_are_not_pem_and_a_missing_search_base_are_named(corp, box, graph_emulator, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    directory, ou = box
    emu = graph_emulator
    text = tmp_path / 'ca.txt'
    text.write_text('this is not a certificate\n')
    der = tmp_path / 'ca.der'
    der.write_bytes(x509.load_pem_x509_certificate(open(corp.ca_file, 'rb').read()).public_bytes(serialization.Encoding.DER))
    group = [entra_group('Never written', [entra_user(corp.identities[0])])]
    graph = dict(tenant_id=emu.tenant_id, client_id=emu.client_id, client_secret=emu.client_secret,
                 authority_host=emu.authority_url, graph_endpoint=emu.base_url, groups=['Finance Team'])
    cases = [
        ('ad_ca_file text', {'hybrid_identity.cloud_sync.ad_group_writeback': ad_args(
            corp, ad_ca_file=str(text), entra_groups=group, target_ou=ou, search_base=ou)},
         ['ad_ca_file', str(text), 'not a PEM file']),
        ('ad_ca_file DER', {'hybrid_identity.cloud_sync.cloudsync_permissions': ad_args(corp, ad_ca_file=str(der), targets=[ou])},
         ['ad_ca_file', 'DER', 'openssl x509 -inform der']),
        ('graph_ca_bundle text', {'hybrid_identity.cloud_sync.entra_group_info': dict(graph, graph_ca_bundle=str(text))},
         ['graph_ca_bundle', str(text), 'not a PEM file']),
        ('graph_ca_bundle DER', {'hybrid_identity.cloud_sync.entra_group_info': dict(graph, graph_ca_bundle=str(der))},
         ['graph_ca_bundle', 'DER']),
        ('missing search base', {'hybrid_identity.cloud_sync.ad_group_writeback': ad_args(
            corp, entra_groups=group, target_ou=ou, search_base='OU=Nowhere-%s,%s' % (uuid.uuid4().hex[:6], corp.base_dn))},
         ['search_base', 'OU=Nowhere-', 'does not exist']),
    ]
    unused_rc, unused_out, results = run_tasks(tmp_path, [task for _n, task, _w in cases])
    for (name, _task, words), result in zip(cases, results):
        assert_clean_failure(name, result, words)
    assert [e for e in emu.admin.requests() if e['kind'] in ('token', 'graph')] == [], 'Graph was asked with an unusable CA bundle'
    assert directory.children(ou) == []
