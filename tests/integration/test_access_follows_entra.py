# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Access follows Entra, end to end, on real components: the lab's corp DC serves an SMB share
whose ACL (``valid users``) names a group written back from Entra (HTTPS Graph emulator), by its
objectSid as a Windows ACL does (Samba 4.17's smbd does not match a universal group given by name,
see Lab.smb_share; written-back groups are universal). A synced user who is a member gets a Kerberos ticket (kinit against the DC's KDC)
and reads a file over SMB (smbclient --use-kerberos=required); removed from the group in Entra
and written back, a fresh ticket no longer reads it; added back, it reads again. Membership
through a nested (child) group grants access too, and ends when the child leaves the parent. A
rename in Entra keeps access (the writeback renames the same object: same SID).
Once with the writeback engine, once with the real ansible-rulebook doing the writeback.

Why a fresh ticket: the user's groups travel in the ticket's PAC, issued by the KDC when the
ticket is (MS-PAC, https://learn.microsoft.com/openspecs/windows_protocols/ms-pac/); a ticket from
before the change keeps the old groups until it expires.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import uuid

import pytest

from eda_helpers import Rulebook, eda_env, wait_until
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import sid_from_bytes
from writeback_helpers import Directory, graph_args, identity_dn_keys, run, synced_users

SECRET = 'governed by Entra\n'


@pytest.fixture(autouse=True)
def _no_ambient_ca_bundle(monkeypatch):
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', '/nonexistent/ca-bundle.pem')


@pytest.fixture
def world(lab, corp, graph_tenant, graph_emulator_factory, tmp_path):
    ids = [i for i in corp.identities if i.get('password')][4:7]
    assert len(ids) == 3, 'the lab needs seeded users with passwords'
    b = graph_tenant()
    users = synced_users(b, ids)
    tag = uuid.uuid4().hex[:6]
    child = b.group('Access Child %s' % tag, members=[users[1]])
    parent = b.group('Access Parent %s' % tag, members=[users[0], child])
    emu = graph_emulator_factory(b.build())
    directory = Directory(corp)
    ou = directory.make_ou('t-access-%s' % tag)
    share = 'gov%s' % tag
    try:
        w = dict(emu=emu, ids=ids, users=users, parent=parent, child=child, ou=ou, directory=directory, share=share,
                 lab=lab, corp=corp, tmp=tmp_path)
        writeback(w)
        sid = directory.one(parent, ou)['attributes']['objectSid']
        sid = sid if isinstance(sid, str) else sid_from_bytes(sid[0] if isinstance(sid, list) else sid)
        lab.smb_share(share, sid, {'plan.txt': SECRET})
        yield w
    finally:
        lab.remove_smb_share(share)
        directory.remove_tree(ou)
        directory.close()


def writeback(w):
    return run(w['corp'], None, groups=[w['parent'], w['child']], target_ou=w['ou'], search_base=w['ou'],
               **graph_args(w['emu']))


def reads(w, index):
    """Whether identity ``index`` reads the file with a fresh ticket (and what smbclient said)."""
    ident = w['ids'][index]
    ccache = os.path.join(str(w['tmp']), 'ccache-%s-%s' % (ident['sam_account_name'], uuid.uuid4().hex[:6]))
    ok, text = w['corp'].smb_read(w['share'], 'plan.txt', '%s@%s' % (ident['sam_account_name'], w['corp'].realm),
                                  ident['password'], ccache)
    if ok:
        assert text == SECRET
    else:
        assert 'NT_STATUS_ACCESS_DENIED' in text, text
    return ok


def test_access_follows_entra_membership_through_the_writeback(world):
    w, admin = world, world['emu'].admin
    assert reads(w, 0)            # direct member
    assert reads(w, 1)            # member of the nested child group
    assert not reads(w, 2)        # never a member

    admin.remove_members(w['parent'], [w['users'][0]])
    assert writeback(w)['summary']['members_removed'] == 1
    assert not reads(w, 0)
    assert reads(w, 1)

    admin.add_members(w['parent'], [w['users'][0]])
    writeback(w)
    assert reads(w, 0)

    admin.update_group(w['parent'], displayName='Access Renamed %s' % w['parent'][-6:])
    assert writeback(w)['summary']['renamed'] == 1
    assert reads(w, 0) and reads(w, 1)

    admin.remove_members(w['parent'], [w['child']])    # the child group leaves the parent
    writeback(w)
    assert not reads(w, 1)
    assert reads(w, 0)


def test_access_follows_entra_through_the_rulebook(world):
    w, d, admin = world, world['directory'], world['emu'].admin
    rb = Rulebook(eda_env(w['emu'], w['corp'], w['ou'], w['tmp'] / 'eda-delta.json'), w['tmp']).start()
    try:
        assert reads(w, 0)
        admin.remove_members(w['parent'], [w['users'][0]])
        wait_until(lambda: w['ids'][0]['dn'].lower() not in
                   set(x.lower() for x in d.one(w['parent'], w['ou'])['attributes'].get('member', [])),
                   rb, 'the removal reaching AD')
        assert not reads(w, 0)
        assert reads(w, 1)

        admin.add_members(w['parent'], [w['users'][0]])
        wait_until(lambda: d.member_keys(d.one(w['parent'], w['ou'])) >= identity_dn_keys(w['ids'][:1]),
                   rb, 'the addition reaching AD')
        assert reads(w, 0)
    finally:
        rb.stop()
