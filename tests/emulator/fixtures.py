"""pytest fixtures for the Graph emulator (wired in by tests/conftest.py through pytest_plugins).

* ``graph_emulator``: a fresh emulator (function scope) on the small built-in tenant.
* ``graph_emulator_module``: the same, shared by a module (do not mutate state in it).
* ``graph_tenant``: ``graph_tenant(**generate_kwargs) -> TenantBuilder`` (hand-built shapes on an
  empty or generated tenant, with the standard apps); ``.build()`` gives the tenant dict.
* ``graph_emulator_factory``: ``factory(tenant dict or TenantBuilder, **emulator_kwargs) -> Emulator``
  (with the credential attributes below), stopped at teardown.

Each emulator carries the credentials of the tenant's apps::

    emu.tenant_id, emu.client_id, emu.client_secret            # the full-permission app
    emu.client_cert_file, emu.client_key_file, emu.client_cert_thumbprint   # its certificate
    emu.limited_client_id   # an app with only GroupMember.Read.All (users come back limited)
    emu.noperm_client_id    # an app with no permission at all (403)
    emu.admin               # Admin: faults, log, mutations (server.Admin)
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import datetime
import fcntl
import os
import pathlib

import pytest

from emulator.generate import DEFAULT_PERMISSIONS, DEFAULT_SECRET, HYBRID_ADMIN_ROLE, generate_tenant
from emulator.server import Emulator

TENANT_ID = "3f1c2b9a-5d6e-4f70-8a9b-0c1d2e3f4a5b"
CLIENT_ID = "11111111-1111-4111-8111-111111111111"
LIMITED_CLIENT_ID = "22222222-2222-4222-8222-222222222222"
NOPERM_CLIENT_ID = "33333333-3333-4333-8333-333333333333"
CLIENT_SECRET = DEFAULT_SECRET


def _lab_dir():
    from lab.pki import default_lab_dir
    return pathlib.Path(default_lab_dir())


@contextlib.contextmanager
def _locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def client_certificate(name="emulator-client"):
    """A self-signed client certificate for certificate credentials (created once under the lab dir).

    Returns (cert_path, key_path, cert_pem, sha1_thumbprint_hex)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    d = _lab_dir() / "emulator"
    cert_path, key_path = d / (name + ".crt"), d / (name + ".key")
    with _locked(d / name):
        if not (cert_path.exists() and key_path.exists()):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            nm = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
            now = datetime.datetime.now(datetime.timezone.utc)
            cert = (x509.CertificateBuilder().subject_name(nm).issuer_name(nm).public_key(key.public_key())
                    .serial_number(x509.random_serial_number())
                    .not_valid_before(now - datetime.timedelta(hours=1))
                    .not_valid_after(now + datetime.timedelta(days=3650))
                    .sign(key, hashes.SHA256()))
            key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
            fd = os.open(str(key_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key_pem)
            cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = cert_path.read_text()
    cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    return str(cert_path), str(key_path), pem, cert.fingerprint(hashes.SHA1()).hex().upper()


def standard_apps():
    pem = client_certificate()[2]
    return [
        {"client_id": CLIENT_ID, "display_name": "cloud_sync writeback", "principal_id": "aaaaaaaa-0000-4000-8000-000000000001",
         "secrets": [CLIENT_SECRET], "certificates": [pem], "permissions": list(DEFAULT_PERMISSIONS),
         "directory_roles": [HYBRID_ADMIN_ROLE]},
        {"client_id": LIMITED_CLIENT_ID, "display_name": "limited reader", "principal_id": "aaaaaaaa-0000-4000-8000-000000000002",
         "secrets": [CLIENT_SECRET], "certificates": [], "permissions": ["GroupMember.Read.All"], "directory_roles": []},
        {"client_id": NOPERM_CLIENT_ID, "display_name": "no permission", "principal_id": "aaaaaaaa-0000-4000-8000-000000000003",
         "secrets": [CLIENT_SECRET], "certificates": [], "permissions": [], "directory_roles": []},
    ]


def build_tenant(**kw):
    """generate_tenant(**kw) with the fixed tenant id and the standard apps (unless given)."""
    kw.setdefault("tenant_id", TENANT_ID)
    kw.setdefault("apps", standard_apps())
    return generate_tenant(**kw)


def small_tenant():
    """The built-in test tenant: 300 users (90% synced), 12 groups (one of 260 members), nesting,
    noise members of every type, and a few named groups tests can find by displayName."""
    t = build_tenant(groups=12, users=300, memberships=500, nesting_depth=2, big_group_members=260, seed=7)
    users = t["users"]
    synced = [u for u in users if u.get("onPremisesSyncEnabled")]
    cloud = [u for u in users if not u.get("onPremisesSyncEnabled")]
    t["groups"][0]["displayName"] = "Paging Group"
    extra = [
        {"id": "f0000000-0000-4000-8000-000000000001", "displayName": "Finance Team",
         "description": "Finance department (cloud security group)", "groupTypes": [], "securityEnabled": True,
         "mailEnabled": False, "mailNickname": "finance"},
        {"id": "f0000000-0000-4000-8000-000000000002", "displayName": "Finance Auditors",
         "description": None, "groupTypes": [], "securityEnabled": True, "mailEnabled": False,
         "mailNickname": "finaudit"},
        {"id": "f0000000-0000-4000-8000-000000000003", "displayName": "All Sales (M365)",
         "groupTypes": ["Unified"], "securityEnabled": False, "mailEnabled": True, "mailNickname": "sales",
         "mail": "sales@contoso.onmicrosoft.com"},
        {"id": "f0000000-0000-4000-8000-000000000004", "displayName": "Dynamic Engineers",
         "groupTypes": ["DynamicMembership"], "membershipRule": '(user.department -eq "Engineering")',
         "membershipRuleProcessingState": "On", "securityEnabled": True, "mailEnabled": False,
         "mailNickname": "dyneng"},
    ]
    t["groups"].extend(extra)
    t["memberships"]["f0000000-0000-4000-8000-000000000001"] = (
        [u["id"] for u in synced[:5]] + [cloud[0]["id"], t["devices"][0]["id"], t["service_principals"][0]["id"],
                                         t["org_contacts"][0]["id"], "f0000000-0000-4000-8000-000000000002"])
    t["memberships"]["f0000000-0000-4000-8000-000000000002"] = [u["id"] for u in synced[5:8]]
    t["memberships"]["f0000000-0000-4000-8000-000000000004"] = [u["id"] for u in synced[8:12]]
    return t


class TenantBuilder(object):
    """Hand-built tenants for tests that need exact shapes.

    ::

        b = TenantBuilder()                      # empty tenant with the standard apps
        alice = b.synced_user("alice", object_guid=ad_guid, object_sid=ad_sid, dn=ad_dn)
        bob = b.user("Bob Cloud")                # cloud-only
        child = b.group("Child", members=[alice])
        parent = b.group("Parent", members=[child, bob, b.device("PC-1")], description="...")
        b.group("M365", kind="unified"); b.group("From AD", kind="synced")
        emu = graph_emulator_factory(b.build())

    ``TenantBuilder(base=build_tenant(groups=...))`` starts from a generated tenant instead.
    Every method returns the new object's id.
    """

    def __init__(self, base=None, tenant_id=TENANT_ID, tenant_type="AAD", apps=None, onprem_domain="corp.example.test"):
        import copy
        if base is not None:
            self.data = copy.deepcopy(base)
        else:
            self.data = generate_tenant(groups=0, users=0, memberships=0, nesting_depth=0, tenant_id=tenant_id,
                                        apps=apps if apps is not None else standard_apps(), seed=1)
            for k in ("users", "groups", "devices", "service_principals", "org_contacts"):
                self.data[k] = []
            self.data["memberships"] = {}
        self.data["tenant_type"] = tenant_type
        self.onprem_domain = onprem_domain
        self._n = 0

    def _id(self, given):
        self._n += 1
        return (given or "e%07x-0000-4000-8000-%012x" % (self._n, self._n)).lower()

    def user(self, display_name, upn=None, id=None, **props):
        oid = self._id(id)
        upn = upn or "%s@contoso.onmicrosoft.com" % display_name.lower().replace(" ", ".")
        u = {"id": oid, "displayName": display_name, "userPrincipalName": upn, "mail": upn, "accountEnabled": True,
             "userType": "Member"}
        u.update(props)
        self.data["users"].append(u)
        return oid

    def synced_user(self, sam, object_guid=None, object_sid=None, domain=None, dn=None, upn=None, immutable_id=None,
                    display_name=None, id=None, **props):
        import uuid
        from emulator.generate import immutable_id_of
        domain = domain or self.onprem_domain
        object_guid = (object_guid or str(uuid.uuid4())).lower()
        upn = upn or "%s@%s" % (sam, domain)
        p = {"onPremisesSyncEnabled": True, "onPremisesObjectIdentifier": object_guid,
             "onPremisesImmutableId": immutable_id or immutable_id_of(object_guid),
             "onPremisesSecurityIdentifier": object_sid or "S-1-5-21-1000-2000-3000-%d" % (2000 + self._n),
             "onPremisesSamAccountName": sam, "onPremisesDomainName": domain,
             "onPremisesDistinguishedName": dn or "CN=%s,CN=Users,%s" % (sam, ",".join("DC=" + x for x in domain.split("."))),
             "onPremisesUserPrincipalName": upn}
        p.update(props)
        return self.user(display_name or sam, upn=upn, id=id, **p)

    def group(self, display_name, kind="security", members=(), description=None, id=None, **props):
        gid = self._id(id)
        g = {"id": gid, "displayName": display_name, "description": description, "groupTypes": [],
             "securityEnabled": True, "mailEnabled": False, "mailNickname": display_name.replace(" ", "")[:20] or "g",
             "onPremisesSyncEnabled": None}
        if kind == "dynamic":
            g["groupTypes"] = ["DynamicMembership"]
            g["membershipRule"] = props.pop("membershipRule", '(user.department -eq "Sales")')
            g["membershipRuleProcessingState"] = "On"
        elif kind == "mail_security":
            g["mailEnabled"] = True
            g["mail"] = "%s@contoso.onmicrosoft.com" % g["mailNickname"]
        elif kind == "unified":
            g.update(groupTypes=["Unified"], mailEnabled=True, securityEnabled=False,
                     mail="%s@contoso.onmicrosoft.com" % g["mailNickname"])
        elif kind == "synced":
            g.update(onPremisesSyncEnabled=True, onPremisesSamAccountName=display_name[:20],
                     onPremisesSecurityIdentifier="S-1-5-21-1000-2000-3000-%d" % (9000 + self._n),
                     onPremisesDomainName=self.onprem_domain)
        elif kind != "security":
            raise ValueError("unknown group kind %r" % kind)
        g.update(props)
        self.data["groups"].append(g)
        if members:
            self.data["memberships"].setdefault(gid, []).extend(members)
        return gid

    def add_members(self, group_id, member_ids):
        self.data["memberships"].setdefault(group_id, []).extend(member_ids)

    def device(self, display_name, id=None, **props):
        oid = self._id(id)
        self.data["devices"].append(dict({"id": oid, "displayName": display_name, "accountEnabled": True}, **props))
        return oid

    def contact(self, display_name, id=None, **props):
        oid = self._id(id)
        self.data["org_contacts"].append(dict({"id": oid, "displayName": display_name}, **props))
        return oid

    def service_principal(self, display_name, id=None, **props):
        oid = self._id(id)
        self.data["service_principals"].append(dict({"id": oid, "displayName": display_name,
                                                     "appId": self._id(None)}, **props))
        return oid

    def build(self):
        return self.data


def start_with_credentials(tenant, **kw):
    if hasattr(tenant, "build"):
        tenant = tenant.build()
    emu = Emulator(tenant, **kw).start()
    cert, key, unused_pem, thumb = client_certificate()
    emu.tenant_id = emu.tenant.tenant_id
    emu.client_id = CLIENT_ID
    emu.client_secret = CLIENT_SECRET
    emu.client_cert_file = cert
    emu.client_key_file = key
    emu.client_cert_thumbprint = thumb
    emu.limited_client_id = LIMITED_CLIENT_ID
    emu.noperm_client_id = NOPERM_CLIENT_ID
    return emu


@pytest.fixture
def graph_emulator():
    emu = start_with_credentials(small_tenant())
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="module")
def graph_emulator_module():
    emu = start_with_credentials(small_tenant())
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def graph_tenant():
    """``graph_tenant(**generate_kwargs) -> TenantBuilder``: with generator arguments (groups=,
    users=, memberships=, big_group_members=, identities=, seed=...) it starts from a generated
    tenant, without them from an empty one; both carry the standard apps. ``.build()`` -> dict."""
    def make(**kw):
        return TenantBuilder(base=build_tenant(**kw)) if kw else TenantBuilder()
    return make


@pytest.fixture
def graph_emulator_factory():
    started = []

    def factory(tenant=None, **kw):
        emu = start_with_credentials(tenant if tenant is not None else small_tenant(), **kw)
        started.append(emu)
        return emu
    try:
        yield factory
    finally:
        for e in started:
            e.stop()
