"""cloudsync_permissions against the lab's Samba AD, through ansible-playbook.

The proof that the ACEs are the right ones: after UserGroupCreateDelete is granted on an OU to the
lab's unprivileged account (svc-writeback), that account, bound over LDAPS, can create, modify,
rename and delete a group there, and still cannot create one outside it.

Every test works in its own OU under OU=Delegated (created and tree-deleted by the test), so the
shared lab's other objects and other tests' grants are never touched.

Reusable helpers for other tests (e.g. the end-to-end writeback test):
``grant_permissions(forest, tmp_path, targets, principal=..., state=..., check=False)`` runs the module,
``bind_as_unprivileged(forest)`` returns an ADClient bound as svc-writeback,
``exercise_group_lifecycle(client, ou_dn)`` creates/modifies/renames/deletes a group and returns what it did,
``sandbox_ou(forest)`` is a context manager making (and removing) a fresh OU under OU=Delegated.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import json
import os
import uuid

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADClient, ADError, first
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.cloudsync_acl import desired_aces
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.security_descriptor import Ace, SecurityDescriptor
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import sid_from_bytes

from writeback_helpers import ad_params, run_playbook

GROUP_CLASS = 'bf967a9c-0de6-11d0-a285-00aa003049e2'

PLAY = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/hybrid_identity.cloud_sync.cloud_sync:
      domain_controllers: ["{ip}"]
      ad_ca_file: "{ca}"
      ad_user: "{user}"
  tasks:
    - name: permissions
      hybrid_identity.cloud_sync.cloudsync_permissions: {args}
      register: r
      ignore_errors: true
    - name: save
      check_mode: false
      diff: false
      ansible.builtin.copy:
        content: "{{{{ r | to_json }}}}"
        dest: "{results}"
"""


# ------------------------------------------------------------------ reusable helpers

def grant_permissions(forest, tmp_path, targets=None, principal=None, state='present', check=False, diff=False, **options):
    """Run cloudsync_permissions through ansible-playbook as the lab's admin; returns (rc, output, result).
    ``result`` is the module's registered result (``failed`` and ``msg`` on failure)."""
    args = dict(options)
    args['state'] = state
    if targets is not None:
        args['targets'] = list(targets)
    if principal is not None:
        args['principal'] = principal
    extra = (['--check'] if check else []) + (['--diff'] if diff else [])
    play = PLAY.format(ip=forest.ip, ca=forest.ca_file, user=forest.admin_upn, args=json.dumps(args), results='{results}')
    tmp_path.mkdir(parents=True, exist_ok=True)
    # the password through the option's environment fallback, so it is in no playbook text Ansible may echo
    return run_playbook(play, tmp_path, extra_args=extra, env={'CLOUDSYNC_AD_PASSWORD': forest.admin_password})


def admin_client(forest):
    return ADClient(ad_params(forest)).connect()


def bind_as_unprivileged(forest):
    """An ADClient bound over LDAPS (certificate validated) as the lab's unprivileged account."""
    return ADClient(ad_params(forest, ad_user=forest.unprivileged_upn, ad_password=forest.unprivileged_password)).connect()


@contextlib.contextmanager
def sandbox_ou(forest, parent=None, prefix='perm'):
    """A fresh OU (under OU=Delegated by default), tree-deleted afterwards."""
    client = admin_client(forest)
    dn = 'OU=%s-%s,%s' % (prefix, uuid.uuid4().hex[:10], parent or forest.delegated_ou)
    client.add(dn, {'objectClass': 'organizationalUnit'})
    try:
        yield dn
    finally:
        try:
            if client.get(dn, ['ou']) is not None:
                client.delete(dn, tree=True)
        finally:
            client.close()


def exercise_group_lifecycle(client, ou_dn):
    """Create, modify, rename and delete a group in ``ou_dn`` with ``client``; each step raises
    ADError if refused. Returns the steps done."""
    name = 'perm-grp-%s' % uuid.uuid4().hex[:8]
    dn = 'CN=%s,%s' % (name, ou_dn)
    steps = []
    client.add(dn, {'objectClass': 'group', 'sAMAccountName': name, 'description': 'created by the delegated account',
                    'groupType': -2147483640})
    steps.append('create')
    client.modify(dn, {'description': ('replace', ['changed']), 'displayName': ('replace', [name + ' display'])})
    entry = client.get(dn, ['description', 'displayName'])
    assert first(entry, 'description') == 'changed'
    steps.append('modify')
    client.modify_dn(dn, 'CN=%s-renamed' % name)
    new_dn = 'CN=%s-renamed,%s' % (name, ou_dn)
    assert client.get(new_dn, ['cn']) is not None
    steps.append('rename')
    client.delete(new_dn)
    assert client.get(new_dn, ['cn']) is None
    steps.append('delete')
    return steps


def read_dacl(forest, dn):
    client = admin_client(forest)
    try:
        return SecurityDescriptor.from_bytes(client.read_security_descriptor(dn))
    finally:
        client.close()


def object_sid(forest, dn):
    client = admin_client(forest)
    try:
        return sid_from_bytes(first(client.get(dn, ['objectSid'], binary_attributes=['objectSid']), 'objectSid'))
    finally:
        client.close()


def explicit_keys(sd):
    return set(a.key() for a in sd.dacl.aces if not a.is_inherited)


def acl_keys_of(forest, dn):
    return explicit_keys(read_dacl(forest, dn))


def unprivileged_sid(forest):
    return object_sid(forest, forest.unprivileged_dn)


# ------------------------------------------------------------------ tests

def test_check_then_apply_then_idempotent_then_absent(corp, tmp_path):
    agent_sid = object_sid(corp, corp.unprivileged_dn)
    wanted = set(a.key() for a in desired_aces('UserGroupCreateDelete', agent_sid))
    with sandbox_ou(corp) as ou:
        original = read_dacl(corp, ou)
        assert not wanted & explicit_keys(original)

        rc, out, r = grant_permissions(corp, tmp_path / 'check', [ou], principal=corp.unprivileged_user, check=True, diff=True)
        assert rc == 0, out
        assert r['changed'] is True and not r.get('failed'), r
        assert len(r['targets']) == 1 and len(r['targets'][0]['aces_added']) == len(wanted) == 5
        assert r['principal']['sid'] == agent_sid
        assert read_dacl(corp, ou).to_bytes() == original.to_bytes()          # check mode wrote nothing
        assert r['diff'][0]['before_header'] == ou
        added_lines = set(r['diff'][0]['after'].splitlines()) - set(r['diff'][0]['before'].splitlines())
        assert added_lines == set(r['targets'][0]['aces_added'])
        assert '(OA;CI;CCDC;%s;;%s)' % (GROUP_CLASS, agent_sid) in added_lines

        rc, out, r = grant_permissions(corp, tmp_path / 'apply', [ou], principal=corp.unprivileged_user)
        assert rc == 0 and r['changed'] is True, out
        granted = read_dacl(corp, ou)
        assert wanted <= explicit_keys(granted)
        assert granted.dacl.is_canonical()
        # every ACE that was there is still there (ours only added)
        assert [a for a in granted.dacl.aces if a.key() not in wanted] == original.dacl.aces
        assert r['targets'][0]['sddl_after'] == granted.to_sddl(_domain_sid(agent_sid))

        rc, out, r = grant_permissions(corp, tmp_path / 'again', [ou], principal=corp.unprivileged_user)
        assert rc == 0 and r['changed'] is False, out
        assert r['targets'][0]['aces_added'] == []
        assert read_dacl(corp, ou).to_bytes() == granted.to_bytes()

        # a foreign explicit ACE for the same principal (not ours) and the same rights for someone else survive absent
        client = admin_client(corp)
        try:
            sd = SecurityDescriptor.from_bytes(client.read_security_descriptor(ou))
            foreign = [Ace(5, 0, 0x10, agent_sid, None, GROUP_CLASS),                           # RP, this object only
                       Ace(5, 2, 3, _domain_sid(agent_sid) + '-512', GROUP_CLASS)]              # CCDC for Domain Admins
            pos = len(sd.dacl.explicit())
            sd.dacl.aces[pos:pos] = foreign
            client.write_security_descriptor(ou, sd.to_bytes())
        finally:
            client.close()
        with_foreign = read_dacl(corp, ou)

        rc, out, r = grant_permissions(corp, tmp_path / 'absent-check', [ou], principal=corp.unprivileged_user, state='absent',
                                       check=True)
        assert rc == 0 and r['changed'] is True and len(r['targets'][0]['aces_removed']) == len(wanted), out
        assert read_dacl(corp, ou).to_bytes() == with_foreign.to_bytes()

        rc, out, r = grant_permissions(corp, tmp_path / 'absent', [ou], principal=corp.unprivileged_user, state='absent')
        assert rc == 0 and r['changed'] is True, out
        after = read_dacl(corp, ou)
        assert not wanted & explicit_keys(after)
        assert [a.key() for a in after.dacl.aces] == [a.key() for a in with_foreign.dacl.aces if a.key() not in wanted]
        assert set(a.key() for a in foreign) <= explicit_keys(after)

        rc, out, r = grant_permissions(corp, tmp_path / 'absent-again', [ou], principal=corp.unprivileged_user, state='absent')
        assert rc == 0 and r['changed'] is False, out


def _domain_sid(sid):
    return sid.rsplit('-', 1)[0]


def test_granted_account_manages_groups_inside_and_nowhere_else(corp, tmp_path):
    with sandbox_ou(corp) as ou:
        # before the grant: refused
        client = bind_as_unprivileged(corp)
        try:
            with pytest.raises(ADError) as err:
                exercise_group_lifecycle(client, ou)
            assert err.value.result_name == 'insufficientAccessRights', err.value.msg
        finally:
            client.close()

        rc, out, r = grant_permissions(corp, tmp_path, [ou], principal=corp.unprivileged_upn)
        assert rc == 0 and r['changed'] is True, out

        client = bind_as_unprivileged(corp)
        try:
            assert exercise_group_lifecycle(client, ou) == ['create', 'modify', 'rename', 'delete']
            # inherited by a sub-OU created by an admin later
            admin = admin_client(corp)
            try:
                sub = 'OU=sub,%s' % ou
                admin.add(sub, {'objectClass': 'organizationalUnit'})
            finally:
                admin.close()
            assert exercise_group_lifecycle(client, sub) == ['create', 'modify', 'rename', 'delete']
            # a user object too (UserGroupCreateDelete covers users)
            user_name = 'perm-usr-%s' % uuid.uuid4().hex[:8]
            user_dn = 'CN=%s,%s' % (user_name, ou)
            client.add(user_dn, {'objectClass': 'user', 'sAMAccountName': user_name})
            client.delete(user_dn)
            # outside the granted OU: refused
            outside = 'CN=perm-out-%s,%s' % (uuid.uuid4().hex[:8], corp.groups_ou)
            with pytest.raises(ADError) as err:
                client.add(outside, {'objectClass': 'group'})
            assert err.value.result_name == 'insufficientAccessRights', err.value.msg
            # an OU is not among the classes it may create
            with pytest.raises(ADError) as err:
                client.add('OU=perm-no,%s' % ou, {'objectClass': 'organizationalUnit'})
            assert err.value.result_name == 'insufficientAccessRights', err.value.msg
        finally:
            client.close()


def test_principal_resolution_and_errors(corp, tmp_path):
    agent_sid = object_sid(corp, corp.unprivileged_dn)
    with sandbox_ou(corp) as ou:
        for i, principal in enumerate([agent_sid, corp.unprivileged_dn, 'CORP\\' + corp.unprivileged_user]):
            rc, out, r = grant_permissions(corp, tmp_path / str(i), [ou], principal=principal, check=True)
            assert rc == 0 and r['principal']['sid'] == agent_sid, out
        # a computer (or gMSA) account named without its trailing $
        pc = 'permpc-%s' % uuid.uuid4().hex[:6]
        admin = admin_client(corp)
        try:
            admin.add('CN=%s,%s' % (pc, ou), {'objectClass': 'computer', 'sAMAccountName': pc + '$'})
        finally:
            admin.close()
        pc_sid = object_sid(corp, 'CN=%s,%s' % (pc, ou))
        for i, principal in enumerate([pc, pc + '$']):
            rc, out, r = grant_permissions(corp, tmp_path / ('pc%d' % i), [ou], principal=principal, check=True)
            assert rc == 0 and r['principal']['sid'] == pc_sid, out
        rc, out, r = grant_permissions(corp, tmp_path / 'missing', [ou], principal='no-such-account-x1')
        assert r['failed'] and 'no-such-account-x1' in r['msg'] and 'no account or group' in r['msg'], r
        assert 'Traceback' not in out
        rc, out, r = grant_permissions(corp, tmp_path / 'gmsa', [ou])          # default provAgentgMSA$ does not exist in the lab
        assert r['failed'] and 'provAgentgMSA$' in r['msg'], r
        rc, out, r = grant_permissions(corp, tmp_path / 'nodn', ['OU=does-not-exist,' + corp.base_dn], principal=corp.unprivileged_user)
        assert r['failed'] and 'noSuchObject' in r['msg'], r
        rc, out, r = grant_permissions(corp, tmp_path / 'phs', [ou], principal=corp.unprivileged_user, permission_type='PasswordHashSync')
        assert r['failed'] and 'only on the domain root' in r['msg'], r
        assert corp.admin_password not in out


def test_adminsdholder_and_domain_root_in_check_mode(corp, tmp_path):
    """Check mode against the domain root and AdminSDHolder of the shared lab: reported, nothing written."""
    root_before = read_dacl(corp, corp.base_dn).to_bytes()
    holder = 'CN=AdminSDHolder,CN=System,' + corp.base_dn
    holder_before = read_dacl(corp, holder).to_bytes()
    rc, out, r = grant_permissions(corp, tmp_path, principal=corp.unprivileged_user, check=True, include_adminsdholder=True,
                                   permission_type='All')
    assert rc == 0, out
    assert [t['dn'] for t in r['targets']] == [corp.base_dn, holder]
    root_added = r['targets'][0]['aces_added']
    # domain-root-only ACEs (replication rights) on the root, not on AdminSDHolder
    assert any('1131f6ad-9c07-11d1-f79f-00c04fc2dcd2' in a for a in root_added)
    assert not any('1131f6ad-9c07-11d1-f79f-00c04fc2dcd2' in a for a in r['targets'][1]['aces_added'])
    assert read_dacl(corp, corp.base_dn).to_bytes() == root_before
    assert read_dacl(corp, holder).to_bytes() == holder_before
    assert any('inherit-only' in w for w in r.get('warnings', [])), r


def test_private_lab_domain_root_and_adminsdholder(tmp_path):
    """Real writes on the domain root and AdminSDHolder happen only in a private lab
    (CLOUDSYNC_PERMISSIONS_PRIVATE_LAB=1 with CLOUDSYNC_LAB_DIR / CLOUDSYNC_LAB_IPS), never in the shared one."""
    if not os.environ.get('CLOUDSYNC_PERMISSIONS_PRIVATE_LAB') or not os.environ.get('CLOUDSYNC_LAB_DIR'):
        pytest.skip('set CLOUDSYNC_PERMISSIONS_PRIVATE_LAB=1 with CLOUDSYNC_LAB_DIR/CLOUDSYNC_LAB_IPS of a private lab')
    from lab.lab import Lab
    forest = Lab().up(('corp',))['corp']
    holder = 'CN=AdminSDHolder,CN=System,' + forest.base_dn
    root_before = read_dacl(forest, forest.base_dn).to_bytes()
    holder_before = read_dacl(forest, holder).to_bytes()

    # default target (the domain root), every permission type, and AdminSDHolder
    rc, out, r = grant_permissions(forest, tmp_path / 'a', principal=forest.unprivileged_user, permission_type='All',
                                   include_adminsdholder=True)
    assert rc == 0 and r['changed'], out
    assert [t['dn'] for t in r['targets']] == [forest.base_dn, holder]
    assert len(r['targets'][0]['aces_added']) == len(desired_aces('All', r['principal']['sid']))
    rc, out, r = grant_permissions(forest, tmp_path / 'b', principal=forest.unprivileged_user, permission_type='All',
                                   include_adminsdholder=True)
    assert rc == 0 and not r['changed'], out

    # granted at the root, inherited everywhere: the account now manages groups in OU=CloudGroups
    client = bind_as_unprivileged(forest)
    try:
        assert exercise_group_lifecycle(client, forest.groups_ou) == ['create', 'modify', 'rename', 'delete']
    finally:
        client.close()

    # a type the second target does not accept: refused before the first target is written
    staff_before = read_dacl(forest, forest.staff_ou).to_bytes()
    rc, out, r = grant_permissions(forest, tmp_path / 'phs', [forest.base_dn, forest.staff_ou], principal=forest.unprivileged_user,
                                   permission_type='PasswordHashSync', state='absent')
    assert r['failed'] and forest.staff_ou in r['msg'] and 'only on the domain root' in r['msg'], r
    assert read_dacl(forest, forest.staff_ou).to_bytes() == staff_before
    assert len(acl_keys_of(forest, forest.base_dn) & set(a.key() for a in desired_aces('PasswordHashSync', unprivileged_sid(forest)))) == 2

    rc, out, r = grant_permissions(forest, tmp_path / 'c', principal=forest.unprivileged_user, permission_type='All',
                                   include_adminsdholder=True, state='absent')
    assert rc == 0 and r['changed'], out
    assert read_dacl(forest, forest.base_dn).to_bytes() == root_before
    assert read_dacl(forest, holder).to_bytes() == holder_before
    client = bind_as_unprivileged(forest)
    try:
        with pytest.raises(ADError) as err:
            exercise_group_lifecycle(client, forest.groups_ou)
        assert err.value.result_name == 'insufficientAccessRights', err.value.msg
    finally:
        client.close()
