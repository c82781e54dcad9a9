"""Hostile and wrong input against the real lab (and the Graph emulator), end to end.

- Group names made of DN and filter metacharacters, a leading #, edge spaces, non-ASCII, control
  characters, maximal length and injection attempts are written back and read back exactly.
- Filters built from hostile ids match nothing extra in a directory that holds other managed groups;
  an OData injection in a selected display name selects nothing.
- Wrong options and broken environments (invalid option values, an unknown OU, unreachable DCs,
  a wrong password, an expired DC certificate, a certificate from another CA, a wrong client
  secret, an unreachable Graph) each end in a failed task whose message says what to fix, never a
  traceback, run through ansible-playbook as users run it.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import json
import uuid

import pytest

from listeners import Listener

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_reader
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback_plan import cn_for

from emulator.fixtures import TenantBuilder
from lab import pki

from writeback_helpers import Directory, entra_group, entra_user, first, run, run_playbook

HOSTILE_NAMES = [
    '*)(objectClass=*',
    ')(|(cn=*))(cn=x',
    "a' or 1 eq 1",
    "') or startswith(displayName,'",
    '#leading hash',
    ' leading and trailing spaces ',
    'every, DN + "meta" \\ <char> ; = # here',
    '\\2a escaped-looking \\00',
    'Ünïcødé グループ 名前 \U0001F600',
    'ctl\x01\x1f\x7f and\ttab',
    'x' * 253 + 'END',  # 256: the longest displayName Entra (and AD's rangeUpper) allows
    '=',
]


@pytest.fixture
def box(corp):
    directory = Directory(corp)
    dn = directory.make_ou('t-hostile-%s' % uuid.uuid4().hex[:8])
    yield directory, dn
    directory.remove_tree(dn)
    directory.close()


def test_hostile_names_round_trip_exactly(corp, box):
    directory, ou = box
    ids = corp.identities
    groups = [entra_group(name, [entra_user(ids[n % 10])], description=name) for n, name in enumerate(HOSTILE_NAMES)]
    result = run(corp, groups, target_ou=ou, search_base=ou)
    assert result['summary']['errors'] == 0 and result['summary']['created'] == len(groups), result['groups']
    for group in groups:
        entry = directory.one(group['id'], base=ou)
        assert first(entry, 'displayName') == group['display_name'], 'displayName did not round-trip'
        assert first(entry, 'cn') == cn_for(group), 'cn is not the documented one'
        assert first(entry, 'description') == group['description'].strip()
        assert directory.get(entry['dn'], ['cn']) is not None, 'the DN the entry reports does not find it'
    again = run(corp, groups, target_ou=ou, search_base=ou)
    assert again['changed'] is False, [g for g in again['groups'] if g['action'] != 'unchanged']


def test_filters_built_from_hostile_ids_match_nothing_extra(corp, box):
    directory, ou = box
    groups = [entra_group('Bystander %d' % n) for n in range(3)]
    run(corp, groups, target_ou=ou, search_base=ou)
    real = groups[0]['id']
    client = directory.client
    wildcards = ['*', '*)(objectClass=*', '\\2a', ')(|(cn=*', 'x)(!(cn=x', real[:-1] + '*', real + ')(|(cn=*', ')(' + real]
    assert ad_reader.read_managed_groups(client, ou, wildcards) == []
    assert ad_reader.read_writeback_v2_groups(client, ou, wildcards) == []
    # Variants of a real id may find that one group (AD compares case-insensitively; Samba ends a
    # value at NUL), never another one.
    variants = [real + '\x00', real.upper(), real + ' ', real + '\x00*)(cn=*']
    for variant in variants:
        found = ad_reader.read_managed_groups(client, ou, [variant])
        assert [g['anchor'] for g in found] in ([], ['Group_' + real]), (variant, found)
    assert ad_reader.read_sam_account_names(client, ou, ['*', '*)(objectClass=*']) == set()
    users = [dict(id='u%d' % n, type='user', on_premises_object_identifier=v, on_premises_security_identifier=v,
                  on_premises_immutable_id=v) for n, v in enumerate(['*', '*)(objectClass=*', 'S-1-5-21-*', '//8='])]
    resolution, unresolved = ad_reader.resolve_users(client.global_catalog(), users)
    assert resolution == {} and len(unresolved) == 4


def test_entra_groups_ids_that_are_not_guids_are_never_written(corp, box):
    """An id that is not a GUID (hand-written entra_groups, or an injection attempt) is never
    anchored or created: the planner leaves it out with a warning naming it; other groups go on."""
    directory, ou = box
    good = entra_group('Good group')
    bad = [entra_group('Bad %d' % n, group_id=gid) for n, gid in enumerate(['*)(objectClass=*', 'finance', '*', ''.join('g' * 36)])]
    result = run(corp, bad + [good], target_ou=ou, search_base=ou)
    assert result['summary']['created'] == 1 and result['summary']['errors'] == 0
    assert [g['id'] for g in result['groups']] == [good['id']]
    for group in bad:
        assert any(group['id'].lower() in w.lower() for w in result['warnings']), (group['id'], result['warnings'])
    assert len(directory.children(ou)) == 1
    directory.one(good['id'], base=ou)


def test_odata_injection_in_a_selected_name_selects_nothing(corp, box, graph_emulator_factory):
    directory, ou = box
    b = TenantBuilder(onprem_domain=corp.dns_domain)
    for n in range(3):
        b.group('Tenant group %d' % n)
    emu = graph_emulator_factory(b.build(), settings={'throttle_enabled': False})
    graph = dict(tenant_id=emu.tenant_id, client_id=emu.client_id, client_secret=emu.client_secret,
                 authority_host=emu.authority_url, graph_endpoint=emu.base_url, graph_ca_bundle=emu.ca_file,
                 auth_method='auto', cloud='public', graph_validate_certs=True, graph_timeout=30, graph_max_retries=2,
                 graph_max_retry_wait=30, graph_parallelism=2)
    injections = ["x' or 1 eq 1 or displayName eq 'x", "') or startswith(displayName,'", "Tenant group 0' or '1' eq '1", '*']
    result = run(corp, None, groups=injections, target_ou=ou, search_base=ou, **graph)
    assert result['summary']['created'] == 0 and result['changed'] is False
    assert sorted(result['not_found']) == sorted(injections)
    assert directory.children(ou) == []
    filters = [e['path'] for e in emu.admin.requests() if e['kind'] == 'graph' and '/groups' in e['path']]
    assert filters, 'no group lookup was sent'
    assert emu.admin.counters()['by_status'].get('400', 0) == 0, 'a hostile name made an invalid OData filter'


# -- wrong options and broken environments, through ansible-playbook ------------------------------

def other_ca(path):
    """A CA certificate that signed nothing of the lab's."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'Some Other CA')])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


CASES = {
    # name: (task arguments beyond the defaults, words the message must hold)
    'invalid_naming': ({'naming': 'fancy'}, ['naming', 'fancy', 'cloud_sync']),
    'invalid_port': ({'ad_port': 0}, ['ad_port', 'between 1 and 65535']),
    'invalid_tls_mode': ({'ad_tls_mode': 'sslv2'}, ['ad_tls_mode', 'ldaps']),
    'bad_ou_map_regex': ({'ou_map': [{'pattern': '([unclosed', 'ou': '{ou}'}]}, ['pattern', '([unclosed']),
    'bad_sam_template': ({'sam_account_name_template': '{nope}_{id_suffix}'}, ['sam_account_name_template', 'display_name']),
    'target_ou_not_a_dn': ({'target_ou': 'Cloud Groups'}, ['target_ou', 'Cloud Groups']),
    'unknown_ou': ({'target_ou': 'OU=Does Not Exist,{base}'}, ['OU=Does Not Exist', 'does not exist', 'Nothing was written']),
    'unreachable_dcs': ({'domain_controllers': ['127.0.0.98', '127.0.0.98:1636']},
                        ['Could not connect to any domain controller', '127.0.0.98', 'connection refused']),
    'wrong_password': ({'ad_password': '{wrong_password}'}, ['invalidCredentials', 'check ad_user and ad_password']),
    'expired_certificate': ({'domain_controllers': ['{expired}']}, ['certificate', 'expired', 'ad_ca_file']),
    'wrong_ca': ({'ad_ca_file': '{other_ca}'}, ['certificate', 'ad_ca_file']),
    'ca_file_missing': ({'ad_ca_file': '/nonexistent/ca.pem'}, ['ad_ca_file', '/nonexistent/ca.pem', 'does not exist']),
    'plaintext_password_bind': ({'ad_tls_mode': 'none', 'ad_allow_plaintext': True}, ['clear text', 'ldaps']),
    'wrong_client_secret': ({'graph': True, 'client_secret': 'not-the-secret'}, ['AADSTS7000215', 'client']),
    'unreachable_graph': ({'graph': True, 'graph_endpoint': 'https://127.0.0.98:1', 'authority_host': 'https://127.0.0.98:1'},
                          ['127.0.0.98']),
    'graph_wrong_ca': ({'graph': True, 'graph_ca_bundle': '{other_ca}'}, ['graph_ca_bundle']),
}


def test_wrong_options_and_broken_environments_fail_with_a_message_that_says_what_to_fix(
        corp, box, tmp_path, graph_emulator_factory):
    _directory, ou = box
    lab_dir = tmp_path.__class__(corp.ca_file).resolve().parents[1]
    cert, key = pki.issue_expired_cert(lab_dir, 'hostile-expired', [], ['127.0.0.97'])
    expired = Listener('127.0.0.97', cert, key)
    emu = graph_emulator_factory(TenantBuilder(onprem_domain=corp.dns_domain).build(), settings={'throttle_enabled': False})
    subst = {'{ou}': ou, '{base}': corp.base_dn, '{wrong_password}': 'Wr0ng-%s' % uuid.uuid4().hex,
             '{expired}': expired.address, '{other_ca}': other_ca(tmp_path / 'other-ca.pem')}
    group = entra_group('Never written', [entra_user(corp.identities[0])])

    def fill(value):
        if isinstance(value, str):
            for k, v in subst.items():
                value = value.replace(k, v)
            return value
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return dict((k, fill(v)) for k, v in value.items())
        return value

    tasks = []
    for name, (args, _words) in CASES.items():
        task = {'domain_controllers': [corp.ip], 'ad_ca_file': corp.ca_file, 'ad_user': corp.admin_upn,
                'ad_password': corp.admin_password, 'target_ou': ou, 'search_base': ou, 'ad_timeout': 3}
        args = dict(args)
        if args.pop('graph', False):
            task.update(groups=['Never written'], tenant_id=emu.tenant_id, client_id=emu.client_id,
                        client_secret=emu.client_secret, authority_host=emu.authority_url, graph_endpoint=emu.base_url,
                        graph_ca_bundle=emu.ca_file, graph_max_retries=1, graph_timeout=5)
        else:
            task['entra_groups'] = [group]
        task.update(fill(args))
        tasks.append({'name': name, 'hybrid_identity.cloud_sync.ad_group_writeback': task, 'register': 'r_' + name,
                      'ignore_errors': True})
    save = '{{ {%s} | to_json }}' % ', '.join("'%s': r_%s" % (n, n) for n in CASES)
    tasks.append({'name': 'save', 'ansible.builtin.copy': {'content': save, 'dest': '{results}', 'mode': '0600'}})
    play = json.dumps([{'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}])
    try:
        rc, output, saved = run_playbook(play, tmp_path)
    finally:
        expired.close()
    assert saved is not None, output[-4000:]
    assert 'Traceback' not in output and 'exception occurred' not in output.lower(), output[-4000:]
    problems = {}
    for name, (_args, words) in CASES.items():
        res = saved[name]
        msg = res.get('msg', '')
        missing = [w for w in words if w.lower() not in msg.lower()]
        # ansible-core 2.19 registers exception="(traceback unavailable)" on every failure; a module
        # that handed over a traceback (an unexpected error) would show it there.
        if not res.get('failed') or missing or 'Traceback' in str(res.get('exception', '')) or 'Traceback' in msg \
                or 'unexpectedly' in msg:
            problems[name] = dict(failed=res.get('failed'), missing=missing, msg=msg[:600], exception=res.get('exception'))
    assert problems == {}, json.dumps(problems, indent=1)
    assert _directory.children(ou) == [], 'a failed run wrote a group'
    assert rc != 0 or all(saved[n].get('failed') for n in CASES)


# -- a tampered or damaged delta state file -------------------------------------------------------

def _graph_params(emu):
    return dict(tenant_id=emu.tenant_id, client_id=emu.client_id, client_secret=emu.client_secret,
                authority_host=emu.authority_url, graph_endpoint=emu.base_url, graph_ca_bundle=emu.ca_file,
                auth_method='auto', cloud='public', graph_validate_certs=True, graph_timeout=10, graph_max_retries=1,
                graph_max_retry_wait=10, graph_parallelism=2)


def test_a_tampered_or_damaged_delta_state_file_never_sends_the_token_elsewhere_nor_crashes(corp, box, graph_emulator_factory,
                                                                                            tmp_path):
    directory, ou = box
    b = TenantBuilder(onprem_domain=corp.dns_domain)
    b.group('Delta group', members=[b.synced_user(i['sam_account_name'], object_guid=i['object_guid'],
                                                  object_sid=i['object_sid'], dn=i['dn'], domain=i['domain'],
                                                  upn=i['user_principal_name'], immutable_id=i['immutable_id'])
                                    for i in corp.identities[:2]])
    emu = graph_emulator_factory(b.build(), settings={'throttle_enabled': False})
    state_path = tmp_path / 'delta.json'
    params = dict(all_groups=True, target_ou=ou, search_base=ou, delta_state_path=str(state_path), **_graph_params(emu))
    assert run(corp, None, **params)['summary']['created'] == 1
    state = json.loads(state_path.read_text())
    assert state.get('delta_link', '').startswith(emu.base_url)

    elsewhere = Listener('127.0.0.96')
    try:
        state['delta_link'] = elsewhere.origin + '/v1.0/groups/delta?$deltatoken=stolen'
        state_path.write_text(json.dumps(state))
        try:
            result = run(corp, None, **params)
        except CloudSyncError as err:
            assert elsewhere.origin in err.msg, err.msg  # refused, naming the foreign host
        else:
            assert result['summary']['errors'] == 0  # or ignored: a full read instead
    finally:
        elsewhere.close()
    assert elsewhere.connections == 0, 'the Graph token was sent to a host named in the state file'

    for damaged in ('{"delta_link": "https://', '[]', '{"version": 999}', '"text"', '{"groups": 5, "objects": []}'):
        state_path.write_text(damaged)
        try:
            result = run(corp, None, **params)
        except CloudSyncError as err:
            assert str(state_path) in err.msg or 'delta' in err.msg.lower(), (damaged, err.msg)
        else:
            assert result['summary']['errors'] == 0, (damaged, result['summary'])
    assert len(directory.children(ou)) == 1


def test_hostile_names_read_from_graph_round_trip_and_select_exactly_themselves(corp, box, graph_emulator_factory):
    """The same names, now coming from Graph: all mode writes each exactly; selecting one by its
    (injection-shaped) display name finds that group and no other."""
    directory, ou = box
    b = TenantBuilder(onprem_domain=corp.dns_domain)
    names = [n for n in HOSTILE_NAMES if n == n.strip()]  # Entra trims display names itself
    ids = dict((b.group(name), name) for name in names)
    emu = graph_emulator_factory(b.build(), settings={'throttle_enabled': False})
    params = dict(target_ou=ou, search_base=ou, **_graph_params(emu))
    picked = "a' or 1 eq 1"
    selected = run(corp, None, groups=[picked], **params)
    assert [g['display_name'] for g in selected['groups']] == [picked], selected['groups']
    assert selected['not_found'] == [] and len(directory.children(ou)) == 1
    everything = run(corp, None, all_groups=True, **params)
    assert everything['summary']['errors'] == 0, everything['groups']
    for gid, name in ids.items():
        assert first(directory.one(gid, base=ou), 'displayName') == name
    assert len(directory.children(ou)) == len(names)


@pytest.mark.parametrize('extended', [False, True])
def test_a_member_of_several_groups_is_one_dn_string_in_a_read(corp, box, extended):
    """read_managed_groups hands out one string per member DN (ad_reader.group_from_entry's
    ``same_dns``), with and without the extended-DN control; the DN is the user's."""
    directory, ou = box
    member = entra_user(corp.identities[1])
    run(corp, [entra_group('Shares a member %d' % i, [member]) for i in range(2)], target_ou=ou, search_base=ou)
    guids = {} if extended else None
    groups = ad_reader.read_managed_groups(directory.client, ou, member_guids=guids)
    assert len(groups) == 2 and all(len(g['members']) == 1 for g in groups)
    one, two = groups[0]['members'][0], groups[1]['members'][0]
    assert one.lower() == corp.identities[1]['dn'].lower() and one is two
