# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AD lab itself, checked with ldap3 directly (not the product's AD client).

Run: .venv/bin/python -m pytest tests/integration/test_lab.py -q -p lab.fixtures
These tests prove the lab is what the other tests assume: real DCs answering LDAPS with a
certificate of the lab CA valid for their IP, the 2016 schema attribute, seeded identities
that match the directory, a Global Catalog, and a KDC.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import os
import ssl
import uuid

import ldap3
import pytest
from ldap3.core.exceptions import LDAPSocketOpenError
from ldap3.protocol.formatters.formatters import format_sid

from lab import pki
from lab.lab import Lab

FORESTS = ("corp", "fabrikam")


def first(value):
    return value[0] if isinstance(value, list) else value


def tls_for(ca_file):
    return ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(ca_file), version=ssl.PROTOCOL_TLS_CLIENT)


def ldaps(forest, user=None, password=None, port=636, ca_file=None):
    server = ldap3.Server(forest.ip, port=port, use_ssl=True, tls=tls_for(ca_file or forest.ca_file),
                          get_info=ldap3.NONE, connect_timeout=10)
    return ldap3.Connection(server, user or forest.admin_upn, forest.admin_password if password is None else password,
                            receive_timeout=30, raise_exceptions=False)


@pytest.fixture(params=FORESTS)
def forest(request, lab):
    return lab.forest(request.param)


def test_ldaps_validates_lab_ca_by_ip_and_admin_binds(forest):
    conn = ldaps(forest)
    assert conn.bind(), conn.result
    assert conn.search("", "(objectClass=*)", search_scope=ldap3.BASE, attributes=["defaultNamingContext", "dnsHostName"])
    entry = conn.response[0]["attributes"]
    assert first(entry["defaultNamingContext"]).lower() == forest.base_dn.lower()
    assert first(entry["dnsHostName"]).lower() == forest.dc_hostname
    conn.unbind()


def test_ldaps_wrong_password_refused(forest):
    conn = ldaps(forest, password="not-" + forest.admin_password)
    assert not conn.bind()
    assert conn.result["result"] == 49  # invalidCredentials


def test_ldaps_with_unrelated_ca_fails_validation(forest, lab_dir):
    wrong_ca = pki.other_ca(lab_dir)[0]
    conn = ldaps(forest, ca_file=wrong_ca)
    with pytest.raises(LDAPSocketOpenError) as info:
        conn.open()
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) or "certificate verify failed" in str(info.value)


def test_dc_certificate_names_its_ip_and_host(forest):
    # validated in the handshake (CERT_REQUIRED, hostname = the IP); the SANs are exactly what pki issued
    conn = ldaps(forest)
    conn.open()
    peer = conn.socket.getpeercert()
    sans = set(peer["subjectAltName"])
    assert ("IP Address", forest.ip) in sans
    assert ("DNS", forest.dc_hostname) in sans
    assert not any(pair[1] == "dc9.elsewhere.test" for pair in sans)
    conn.unbind()


def test_plain_389_simple_bind_is_accepted_by_this_lab(forest):
    # ad-lab.md: Samba refuses plaintext simple binds by default ("strong auth required"), but
    # the lab sets `ldap server require strong auth = no` so that ldap3's GSSAPI binds (no
    # sign/seal layer) work; that setting also makes Samba ACCEPT a simple bind in cleartext.
    # So the lab does not protect against plaintext credentials: the collection must refuse
    # to send them itself (its own tests prove that), exactly as on a permissive Windows DC.
    server = ldap3.Server(forest.ip, port=389, use_ssl=False, get_info=ldap3.NONE, connect_timeout=10)
    conn = ldap3.Connection(server, forest.admin_upn, forest.admin_password, raise_exceptions=False)
    assert conn.bind(), conn.result
    conn.unbind()
    # and the password is still checked there
    conn = ldap3.Connection(server, forest.admin_upn, "wrong-" + forest.admin_password, raise_exceptions=False)
    assert not conn.bind()
    assert conn.result["result"] == 49


def test_starttls_on_389_validates_lab_ca(forest):
    server = ldap3.Server(forest.ip, port=389, use_ssl=False, tls=tls_for(forest.ca_file), get_info=ldap3.NONE,
                          connect_timeout=10)
    conn = ldap3.Connection(server, forest.admin_upn, forest.admin_password, raise_exceptions=False)
    conn.open()
    assert conn.start_tls()
    assert conn.bind(), conn.result
    conn.unbind()


def test_schema_extension_present_in_corp(corp):
    conn = ldaps(corp)
    assert conn.bind()
    schema = "CN=Schema,CN=Configuration," + corp.base_dn
    conn.search(schema, "(lDAPDisplayName=msDS-ExternalDirectoryObjectId)",
                attributes=["attributeID", "attributeSyntax", "isSingleValued", "rangeUpper", "isMemberOfPartialAttributeSet"])
    assert len(conn.entries) == 1
    attr = conn.entries[0]
    assert attr.attributeID.value == "1.2.840.113556.1.4.2310"
    assert attr.attributeSyntax.value == "2.5.5.12"
    assert str(attr.isSingleValued.value).upper() == "TRUE"
    assert int(attr.rangeUpper.value) == 256
    assert str(attr.isMemberOfPartialAttributeSet.value).upper() == "TRUE"
    conn.search("CN=Mail-Recipient," + schema, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["mayContain"])
    assert "msDS-ExternalDirectoryObjectId" in conn.entries[0].mayContain.values
    conn.unbind()


def test_group_can_carry_external_directory_object_id(corp):
    conn = ldaps(corp)
    assert conn.bind()
    dn = "CN=lab-selftest-%s,%s" % (uuid.uuid4().hex[:8], corp.groups_ou)
    value = "Group_%s" % uuid.uuid4()
    try:
        assert conn.add(dn, ["group"], {"msDS-ExternalDirectoryObjectId": value, "groupType": -2147483640}), conn.result
        conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["msDS-ExternalDirectoryObjectId"])
        assert conn.entries[0]["msDS-ExternalDirectoryObjectId"].value == value
        conn.search(corp.base_dn, "(msDS-ExternalDirectoryObjectId=%s)" % value, attributes=["cn"])
        assert [e.entry_dn.lower() for e in conn.entries] == [dn.lower()]
    finally:
        conn.delete(dn)
        conn.unbind()


def test_seeded_identities_match_ldap(forest):
    assert len(forest.identities) >= 40
    conn = ldaps(forest)
    assert conn.bind()
    found = {}
    for item in conn.extend.standard.paged_search(forest.staff_ou, "(&(objectClass=user)(objectCategory=person))",
                                                  attributes=["sAMAccountName", "userPrincipalName", "objectGUID", "objectSid"],
                                                  paged_size=1000, generator=True):
        if item.get("type") != "searchResEntry":
            continue
        raw = item["raw_attributes"]
        found[raw["sAMAccountName"][0].decode().lower()] = (item["dn"], raw)
    conn.unbind()
    assert {i["sam_account_name"].lower() for i in forest.identities} == set(found)
    for ident in forest.identities:
        dn, raw = found[ident["sam_account_name"].lower()]
        guid_bytes = raw["objectGUID"][0]
        assert dn.lower() == ident["dn"].lower()
        assert str(uuid.UUID(bytes_le=guid_bytes)) == ident["object_guid"]
        assert base64.b64encode(guid_bytes).decode() == ident["immutable_id"]
        assert format_sid(raw["objectSid"][0]) == ident["object_sid"]
        assert raw["userPrincipalName"][0].decode() == ident["user_principal_name"]
        assert ident["domain"] == forest.dns_domain
        assert ident["object_sid"].startswith("S-1-5-21-")


def test_seeded_user_with_password_binds(forest):
    ident = next(i for i in forest.identities if i["password"])
    conn = ldaps(forest, user=ident["user_principal_name"], password=ident["password"])
    assert conn.bind(), conn.result
    conn.unbind()


def test_identities_distinct_between_forests(corp, fabrikam):
    corp_names = {i["sam_account_name"] for i in corp.identities}
    fab_names = {i["sam_account_name"] for i in fabrikam.identities}
    assert not corp_names & fab_names
    assert not {i["object_sid"] for i in corp.identities} & {i["object_sid"] for i in fabrikam.identities}


def test_global_catalog_answers(forest):
    conn = ldaps(forest, port=3269)
    assert conn.bind(), conn.result
    ident = forest.identities[0]
    conn.search("", "(sAMAccountName=%s)" % ident["sam_account_name"], search_scope=ldap3.SUBTREE, attributes=["objectSid"])
    assert [e.entry_dn.lower() for e in conn.entries] == [ident["dn"].lower()]
    conn.unbind()


def test_unprivileged_account_binds_but_cannot_write(forest):
    conn = ldaps(forest, user=forest.unprivileged_upn, password=forest.unprivileged_password)
    assert conn.bind(), conn.result
    conn.search(forest.unprivileged_dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["memberOf", "objectSid"])
    assert len(conn.entries) == 1
    assert not any("Admins" in g for g in conn.entries[0].memberOf.values)
    dn = "CN=lab-denied-%s,%s" % (uuid.uuid4().hex[:8], forest.groups_ou)
    assert not conn.add(dn, ["group"])
    assert conn.result["result"] == 50  # insufficientAccessRights
    conn.unbind()


def test_kerberos_kdc_and_gssapi_bind_over_ldaps(corp, monkeypatch):
    env = corp.kinit()
    assert os.path.exists(env["KRB5CCNAME"].split(":", 1)[1])
    assert env["KRB5CCNAME"].split(":", 1)[1].startswith(corp.dir)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    server = ldap3.Server(corp.ip, port=636, use_ssl=True, tls=tls_for(corp.ca_file), get_info=ldap3.NONE, connect_timeout=10)
    # connect by IP (TLS validated by IP), Kerberos service name by the DC's host name
    conn = ldap3.Connection(server, authentication=ldap3.SASL, sasl_mechanism=ldap3.KERBEROS,
                            sasl_credentials=(corp.dc_hostname,), raise_exceptions=False)
    assert conn.bind(), conn.result
    conn.search(corp.admin_dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["objectSid"])
    assert len(conn.entries) == 1
    conn.unbind()


def test_kinit_wrong_password_refused(corp):
    from lab.lab import LabError
    with pytest.raises(LabError):
        corp.kinit(password="wrong-password", ccache=os.path.join(corp.dir, "ccache-wrong"))


def test_status_reports_running_forests(lab):
    status = lab.status()
    for name in FORESTS:
        assert status[name]["running"] and status[name]["healthy"]
        assert status[name]["schema_extended"] is True
        assert status[name]["users"] >= 40


def test_legacy_forest_lacks_schema_attribute_and_stops_and_starts(lab):
    # the legacy forest is this test's own (the shared tests never use it), so stopping it is safe
    was_running = lab.status().get("legacy", {}).get("running", False)
    legacy = lab.up(("legacy",))["legacy"]
    assert legacy.schema_extended is False
    conn = ldaps(legacy)
    assert conn.bind()
    conn.search("CN=Schema,CN=Configuration," + legacy.base_dn, "(lDAPDisplayName=msDS-ExternalDirectoryObjectId)")
    assert conn.entries == []
    conn.unbind()
    assert lab.stop_forest("legacy") is True
    with pytest.raises(LDAPSocketOpenError):
        ldaps(legacy).open()
    assert lab.status()["legacy"]["running"] is False
    lab.start_forest("legacy")
    conn = ldaps(legacy)
    assert conn.bind()
    conn.unbind()
    # a second Lab object on the same directory sees the same running lab
    assert Lab(lab.dir).status()["legacy"]["healthy"] is True
    if not was_running:
        lab.stop_forest("legacy")


def test_seeding_is_incremental(lab, corp):
    # everything asked for already exists: nothing is added and the identities stay the same
    result = lab.seed("corp", users=40)
    assert result["added"] == 0
    assert result["users"] == len(corp.identities)
    assert [i["object_guid"] for i in lab.forest("corp").identities] == [i["object_guid"] for i in corp.identities]
