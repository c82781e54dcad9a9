# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``lab.py snapshot`` / ``restore``: an offline copy of a forest's DC and putting it back.

The test provisions a throw-away forest (legacy, no schema extension) in a lab dir of its own
under tmp_path, on 127.0.0.86, so the shared lab (corp, fabrikam) is never stopped or touched.
Run: .venv/bin/python -m pytest tests/integration/test_lab_snapshot.py -q -p no:cacheprovider
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ssl
import subprocess

import ldap3
import pytest

from lab.lab import Lab, LabError

OWN_IP = "127.0.0.86"  # this test's own DC (the shared lab is 127.0.0.2-4)


def ous(forest):
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=forest.ca_file)
    server = ldap3.Server(forest.ip, port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=10)
    conn = ldap3.Connection(server, forest.admin_upn, forest.admin_password, auto_bind=True, receive_timeout=30)
    try:
        conn.search(forest.base_dn, "(objectClass=organizationalUnit)", search_scope=ldap3.LEVEL, attributes=["ou"])
        return {str(e.ou) for e in conn.entries}
    finally:
        conn.unbind()


def add_ou(forest, name):
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=forest.ca_file)
    server = ldap3.Server(forest.ip, port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=10)
    conn = ldap3.Connection(server, forest.admin_upn, forest.admin_password, auto_bind=True, receive_timeout=30)
    try:
        assert conn.add("OU=%s,%s" % (name, forest.base_dn), "organizationalUnit"), conn.result
    finally:
        conn.unbind()


@pytest.fixture
def own_lab(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDSYNC_LAB_IPS", "127.0.0.84,127.0.0.85,%s" % OWN_IP)
    monkeypatch.setenv("CLOUDSYNC_LAB_SHARES_DIR", str(tmp_path / "shares"))
    lab = Lab(tmp_path / "lab")
    try:
        yield lab
    finally:
        lab.down(["legacy"])


def test_snapshot_then_restore_brings_back_the_directory_as_it_was(own_lab):
    legacy = own_lab.up(("legacy",), schema_extension=False)["legacy"]
    assert legacy.ip == OWN_IP
    add_ou(legacy, "BeforeSnapshot")

    taken = own_lab.snapshot("legacy", "one")
    snap = own_lab.dir / "snapshots" / "legacy" / "one"
    assert taken["path"] == str(snap) and taken["bytes"] > 0
    assert (snap / "private" / "sam.ldb").is_file() and (snap / "forest.json").is_file()
    assert own_lab.snapshots("legacy") == ["one"]
    status = own_lab.status()["legacy"]
    assert status["running"] and status["healthy"]  # started again after the copy

    add_ou(legacy, "AfterSnapshot")
    assert {"BeforeSnapshot", "AfterSnapshot"} <= ous(legacy)
    restored = own_lab.restore("legacy", "one")
    assert restored["users"] == len(legacy.identities)
    found = ous(legacy)
    assert "BeforeSnapshot" in found and "AfterSnapshot" not in found
    assert own_lab.status()["legacy"]["healthy"]

    # a snapshot of the same name replaces the older one; the snapshot survives a restore
    add_ou(legacy, "Second")
    own_lab.snapshot("legacy", "one")
    add_ou(legacy, "Third")
    own_lab.restore("legacy", "one")
    found = ous(legacy)
    assert "Second" in found and "Third" not in found
    assert sorted(p.name for p in snap.parent.iterdir()) == ["one"]  # no temporary copies left behind


def test_restore_of_a_missing_snapshot_or_a_bad_name_is_refused(own_lab, tmp_path):
    with pytest.raises(LabError, match="no snapshot 'nothing' of forest legacy"):
        own_lab.restore("legacy", "nothing")
    with pytest.raises(LabError, match="snapshot name"):
        own_lab.snapshot("legacy", "../escape")
    with pytest.raises(LabError, match="unknown forest"):
        own_lab.restore("nowhere", "one")
    assert not (tmp_path / "lab" / "legacy").exists()  # nothing was provisioned or stopped


def test_no_copy_while_a_process_holds_a_file_of_the_forest_open(own_lab, tmp_path):
    # samba's prefork workers may outlive their master by a moment: the copy waits for them, and
    # refuses (naming the process) rather than copying a database that is still open
    held = tmp_path / "lab" / "legacy" / "private" / "sam.ldb"
    held.parent.mkdir(parents=True)
    held.write_text("")
    with open(str(held)) as handle:
        holder = subprocess.Popen(["sleep", "60"], stdin=handle)
    try:
        with pytest.raises(LabError, match=r"processes \[%d\] still hold files under" % holder.pid):
            own_lab._wait_released("legacy", timeout=0.5)  # pylint: disable=protected-access
    finally:
        holder.kill()
        holder.wait()
    own_lab._wait_released("legacy", timeout=5)  # pylint: disable=protected-access
