"""Least privilege, end to end: the permissions cloudsync_permissions grants are exactly enough for
ad_group_writeback. The lab's ordinary account (svc-writeback, no admin rights) gets
UserGroupCreateDelete on one OU; bound as that account, the writeback creates, updates, renames,
re-members and deletes groups there, and a group mapped outside that OU fails with a clear
insufficient-rights message while the others still succeed."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from test_cloudsync_permissions import grant_permissions, sandbox_ou
from writeback_helpers import Directory, entra_group, entra_user, first, identity_dn_keys, run


def as_svc(forest, groups, ou, **kw):
    kw.setdefault('target_ou', ou)
    kw.setdefault('search_base', ou)
    return run(forest, groups, ad_user=forest.unprivileged_upn, ad_password=forest.unprivileged_password, **kw)


def test_writeback_works_with_only_the_granted_rights(corp, tmp_path):
    ids = corp.identities
    directory = Directory(corp)
    try:
        with sandbox_ou(corp, prefix='lp') as ou:
            group = entra_group('Least Privilege', [entra_user(ids[33]), entra_user(ids[34])], description='v1')
            before = as_svc(corp, [group], ou, check=True)
            assert before['changed'] is True  # reading is allowed to any authenticated user

            denied = as_svc(corp, [group], ou, diff=True)
            assert denied['groups'][0]['action'] == 'error'
            assert list(denied['diff']['after'][group['id']]) == ['error'], 'the diff must not show a failed write as done'
            assert 'insufficientAccessRights' in denied['groups'][0]['reason_text']
            assert denied['summary']['errors'] == 1 and denied['summary']['created'] == 0, denied['summary']

            rc, output, _result = grant_permissions(corp, tmp_path / 'grant', targets=[ou],
                                                    principal=corp.unprivileged_user)
            assert rc == 0, output[-2000:]

            created = as_svc(corp, [group], ou)
            assert created['summary']['created'] == 1, created['groups']
            group['display_name'] = 'Least Privilege Renamed'
            group['description'] = 'v2'
            group['members'] = [entra_user(ids[35])]
            updated = as_svc(corp, [group], ou)
            assert updated['summary']['renamed'] == 1 and 'description' in updated['groups'][0]['changes']
            entry = directory.one(group['id'])
            assert first(entry, 'cn').startswith('Least Privilege Renamed_')
            assert directory.member_keys(entry) == identity_dn_keys([ids[35]])
            assert as_svc(corp, [group], ou)['changed'] is False

            outside = entra_group('Outside The Grant')
            mixed = as_svc(corp, [group, outside], ou, ou_map=[{'id': outside['id'], 'ou': corp.groups_ou}])
            by_id = dict((g['id'], g) for g in mixed['groups'])
            assert by_id[outside['id']]['action'] == 'error'
            assert 'insufficientAccessRights' in by_id[outside['id']]['reason_text']
            assert corp.groups_ou.split(',')[0] in by_id[outside['id']]['reason_text']
            assert by_id[group['id']]['action'] == 'unchanged'
            assert directory.by_anchor(outside['id']) == []

            pruned = as_svc(corp, [], ou, prune=True, prune_empty_scope=True)
            assert pruned['summary']['deleted'] == 1
            assert directory.by_anchor(group['id']) == []
    finally:
        directory.close()
