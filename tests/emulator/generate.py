"""Deterministic tenant generator for the Graph emulator (fixture JSON, see README.md).

    generate_tenant(groups=2000, users=20000, memberships=200000, nesting_depth=3,
                    big_group_members=50001, seed=1, identities=None)

* ``identities``: the lab's seeded AD users (dicts with object_guid, object_sid, immutable_id,
  user_principal_name, sam_account_name, domain, dn, optionally display_name). Each becomes a
  synced Entra user carrying the same on-premises identifiers, so members resolve in AD. Without
  them, synced users get synthetic identifiers (they will not resolve in a real AD).
* About 10% of ``users`` are cloud-only users (no on-premises anchor), plus devices, service
  principals and org contacts as member noise.
* Groups: mostly cloud security groups (assigned), some dynamic (with membershipRule),
  mail-enabled security, Microsoft 365 ('Unified') and AD-synced groups as noise.
* Sizes follow a power law; the first group is the big one with ``big_group_members`` members
  (extra cloud-only "bulk" users are created when the tenant has too few objects).
* Nested cloud security groups form chains of ``nesting_depth`` levels (no cycles).

Runs in about a second for 20,000 users / 200,000 memberships.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import random
import uuid

HYBRID_ADMIN_ROLE = "8ac3fc64-6eca-42ea-9e69-59f4c7b60eb2"
AAD_PREMIUM_PLAN = "41781fb2-bc02-4b7c-bd55-b576c07bb09d"
DEFAULT_PERMISSIONS = ["Group.Read.All", "GroupMember.Read.All", "User.Read.All", "Organization.Read.All",
                       "RoleManagement.Read.Directory", "Device.Read.All", "Application.Read.All",
                       "OrgContact.Read.All", "Group-OnPremisesSyncBehavior.ReadWrite.All"]
DEFAULT_SECRET = "emulator-client-secret"


def _guid(rng):
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _sid(rng, domain_sid, rid):
    return "%s-%d" % (domain_sid, rid)


def immutable_id_of(object_guid):
    """onPremisesImmutableId as Entra Connect computes it: base64 of objectGUID (little-endian bytes)."""
    return base64.b64encode(uuid.UUID(object_guid).bytes_le).decode("ascii")


def default_skus():
    return [
        {"skuId": "078d2b04-f1bd-4111-bbd4-b4b1b354cef4", "skuPartNumber": "AAD_PREMIUM",
         "consumedUnits": 10, "prepaidUnits": {"enabled": 100, "suspended": 0, "warning": 0, "lockedOut": 0},
         "servicePlans": [
             {"servicePlanId": "113feb6c-3fe4-4440-bddc-54d774bf0318", "servicePlanName": "EXCHANGE_S_FOUNDATION",
              "provisioningStatus": "Success", "appliesTo": "Company"},
             {"servicePlanId": AAD_PREMIUM_PLAN, "servicePlanName": "AAD_PREMIUM",
              "provisioningStatus": "Success", "appliesTo": "User"},
         ]},
        {"skuId": "6fd2c87f-b296-42f0-b197-1e91e994b900", "skuPartNumber": "ENTERPRISEPACK",
         "consumedUnits": 5, "prepaidUnits": {"enabled": 25, "suspended": 0, "warning": 0, "lockedOut": 0},
         "servicePlans": [
             {"servicePlanId": "efb87545-963c-4e0d-99df-69c6916d9eb0", "servicePlanName": "EXCHANGE_S_ENTERPRISE",
              "provisioningStatus": "Success", "appliesTo": "User"},
             {"servicePlanId": "5dbe027f-2339-4123-9542-606e4d348a72", "servicePlanName": "SHAREPOINTENTERPRISE",
              "provisioningStatus": "Success", "appliesTo": "User"},
         ]},
    ]


def generate_tenant(groups=50, users=200, memberships=1000, nesting_depth=3, big_group_members=0, seed=1,
                    identities=None, alpha=1.1, tenant_id=None, domain="contoso.onmicrosoft.com",
                    onprem_domain="corp.example.test", apps=None, tenant_type="AAD", certificates=None,
                    permissions=None):
    rng = random.Random(seed)
    tid = tenant_id or _guid(rng)
    domain_sid = "S-1-5-21-%d-%d-%d" % (rng.randrange(10 ** 9), rng.randrange(10 ** 9), rng.randrange(10 ** 9))
    base_dn = ",".join("DC=" + p for p in onprem_domain.split("."))
    netbios = onprem_domain.split(".")[0].upper()

    out_users = []
    # synced users
    if identities is not None:
        for i, ident in enumerate(identities):
            guid = ident["object_guid"].lower()
            upn = ident.get("user_principal_name") or "%s@%s" % (ident["sam_account_name"], ident.get("domain") or onprem_domain)
            out_users.append({
                "id": _guid(rng), "displayName": ident.get("display_name") or ident["sam_account_name"],
                "userPrincipalName": upn, "mail": upn, "accountEnabled": True, "userType": "Member",
                "givenName": None, "surname": None,
                "onPremisesSyncEnabled": True,
                "onPremisesImmutableId": ident.get("immutable_id") or immutable_id_of(guid),
                "onPremisesSecurityIdentifier": ident["object_sid"],
                "onPremisesObjectIdentifier": guid,
                "onPremisesSamAccountName": ident["sam_account_name"],
                "onPremisesDomainName": ident.get("domain") or onprem_domain,
                "onPremisesDistinguishedName": ident.get("dn"),
                "onPremisesUserPrincipalName": upn,
                "onPremisesLastSyncDateTime": "2026-11-01T00:00:00Z",
            })
        n_cloud = max(5, users - len(identities))
    else:
        n_synced = users - max(1, users // 10) if users > 1 else users
        for i in range(n_synced):
            guid = _guid(rng)
            sam = "user%05d" % i
            upn = "%s@%s" % (sam, onprem_domain)
            out_users.append({
                "id": _guid(rng), "displayName": "User %05d" % i, "userPrincipalName": upn, "mail": upn,
                "accountEnabled": True, "userType": "Member", "givenName": "User", "surname": "%05d" % i,
                "onPremisesSyncEnabled": True, "onPremisesImmutableId": immutable_id_of(guid),
                "onPremisesSecurityIdentifier": _sid(rng, domain_sid, 1100 + i),
                "onPremisesObjectIdentifier": guid, "onPremisesSamAccountName": sam,
                "onPremisesDomainName": onprem_domain,
                "onPremisesDistinguishedName": "CN=User %05d,OU=People,%s" % (i, base_dn),
                "onPremisesUserPrincipalName": upn, "onPremisesLastSyncDateTime": "2026-11-01T00:00:00Z",
            })
        n_cloud = users - n_synced
    n_synced_users = len(out_users)
    for i in range(n_cloud):
        upn = "cloud%05d@%s" % (i, domain)
        out_users.append({"id": _guid(rng), "displayName": "Cloud User %05d" % i, "userPrincipalName": upn,
                          "mail": upn, "accountEnabled": True, "userType": "Member", "givenName": "Cloud",
                          "surname": "%05d" % i})
    n_devices = max(2, users // 20)
    devices = [{"id": _guid(rng), "displayName": "DEVICE-%04d" % i, "deviceId": _guid(rng), "accountEnabled": True,
                "operatingSystem": "Windows", "operatingSystemVersion": "10.0.22631", "trustType": "AzureAd"}
               for i in range(n_devices)]
    sps = [{"id": _guid(rng), "appId": _guid(rng), "displayName": "Service App %03d" % i,
            "servicePrincipalType": "Application", "accountEnabled": True} for i in range(max(2, users // 200))]
    contacts = [{"id": _guid(rng), "displayName": "Contact %03d" % i, "mail": "contact%03d@partner.example" % i}
                for i in range(max(2, users // 50))]

    # groups
    out_groups = []
    kinds = []
    for i in range(groups):
        gid = _guid(rng)
        r = rng.random()
        kind = "security"
        if i == 0:
            kind = "security"
        elif r < 0.05:
            kind = "dynamic"
        elif r < 0.09:
            kind = "mail_security"
        elif r < 0.14:
            kind = "unified"
        elif r < 0.20:
            kind = "synced"
        g = {"id": gid, "displayName": "Group %05d" % i, "description": None, "groupTypes": [],
             "securityEnabled": True, "mailEnabled": False, "mailNickname": "group%05d" % i, "mail": None,
             "createdDateTime": "2026-0%d-%02dT08:00:00Z" % (1 + i % 9, 1 + i % 28), "visibility": None,
             "onPremisesSyncEnabled": None, "securityIdentifier": "S-1-12-1-%d-%d-%d-%d" % tuple(
                 rng.randrange(2 ** 32) for unused in range(4))}
        if rng.random() < 0.5:
            g["description"] = "Description of group %05d" % i
        if kind == "dynamic":
            g["groupTypes"] = ["DynamicMembership"]
            g["membershipRule"] = '(user.department -eq "Dept %d")' % (i % 7)
            g["membershipRuleProcessingState"] = "On"
            g["displayName"] = "Dynamic %05d" % i
        elif kind == "mail_security":
            g["mailEnabled"] = True
            g["mail"] = "group%05d@%s" % (i, domain)
            g["proxyAddresses"] = ["SMTP:group%05d@%s" % (i, domain)]
        elif kind == "unified":
            g["groupTypes"] = ["Unified"]
            g["mailEnabled"] = True
            g["securityEnabled"] = False
            g["mail"] = "m365-%05d@%s" % (i, domain)
            g["visibility"] = "Private"
            g["displayName"] = "M365 %05d" % i
        elif kind == "synced":
            g["onPremisesSyncEnabled"] = True
            g["onPremisesSecurityIdentifier"] = _sid(rng, domain_sid, 500000 + i)
            g["onPremisesSamAccountName"] = "ADGroup%05d" % i
            g["onPremisesDomainName"] = onprem_domain
            g["onPremisesNetBiosName"] = netbios
            g["onPremisesLastSyncDateTime"] = "2026-11-01T00:00:00Z"
            g["displayName"] = "AD Group %05d" % i
        out_groups.append(g)
        kinds.append(kind)

    # the big group needs enough member objects
    if big_group_members and groups:
        extra = big_group_members - len(out_users)
        for i in range(max(0, extra)):
            upn = "bulk%06d@%s" % (i, domain)
            out_users.append({"id": _guid(rng), "displayName": "Bulk User %06d" % i, "userPrincipalName": upn,
                              "mail": upn, "accountEnabled": True, "userType": "Member"})
    user_ids = [u["id"] for u in out_users]
    synced_ids = user_ids[:n_synced_users] or user_ids
    cloud_ids = user_ids[n_synced_users:n_synced_users + n_cloud]

    member_map = {g["id"]: [] for g in out_groups}
    budget = memberships
    if big_group_members and groups:
        big = out_groups[0]
        big["displayName"] = "All Staff (big)"
        take = min(big_group_members, len(user_ids))
        member_map[big["id"]] = rng.sample(user_ids, take) if take < len(user_ids) else list(user_ids)
        budget -= take
    # power-law sizes for the others
    others = list(range(1 if big_group_members else 0, groups))
    weights = [1.0 / ((rank + 1) ** alpha) for rank in range(len(others))]
    rng.shuffle(others)
    wsum = sum(weights) or 1.0
    budget = max(0, budget)
    for idx, w in zip(others, weights):
        g = out_groups[idx]
        size = int(round(budget * w / wsum))
        pool = synced_ids if rng.random() < 0.9 else user_ids
        size = min(size, len(pool))
        if size <= 0:
            continue
        member_map[g["id"]] = rng.sample(pool, size)
    # noise members in some cloud security groups
    sec_idx = [i for i, k in enumerate(kinds) if k in ("security", "dynamic") and i != 0]
    synced_groups = [out_groups[i]["id"] for i, k in enumerate(kinds) if k == "synced"]
    for i in sec_idx[: max(1, len(sec_idx) // 5)]:
        gid = out_groups[i]["id"]
        noise = [rng.choice(devices)["id"], rng.choice(sps)["id"], rng.choice(contacts)["id"]]
        if cloud_ids:
            noise.append(rng.choice(cloud_ids))
        if synced_groups:
            noise.append(rng.choice(synced_groups))
        existing = set(member_map[gid])
        member_map[gid].extend(n for n in noise if n not in existing)
    # nesting chains among assigned cloud security groups: level L contains groups of level L+1
    assigned = [out_groups[i]["id"] for i, k in enumerate(kinds) if k == "security" and i != 0]
    rng.shuffle(assigned)
    if nesting_depth and len(assigned) > nesting_depth:
        nest_pool = assigned[: max(nesting_depth + 1, len(assigned) // 10)]
        levels = [nest_pool[i::nesting_depth + 1] for i in range(nesting_depth + 1)]
        for lvl in range(nesting_depth):
            for child in levels[lvl + 1]:
                parent = rng.choice(levels[lvl])
                if child not in member_map[parent]:
                    member_map[parent].append(child)

    apps = apps if apps is not None else [default_app(rng, certificates=certificates, permissions=permissions)]
    mis = [{"type": "system", "client_id": _guid(rng), "principal_id": _guid(rng),
            "permissions": list(DEFAULT_PERMISSIONS), "directory_roles": [HYBRID_ADMIN_ROLE]},
           {"type": "user", "client_id": _guid(rng), "principal_id": _guid(rng),
            "resource_id": "/subscriptions/%s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/"
                           "userAssignedIdentities/cloudsync" % _guid(rng),
            "permissions": ["Group.Read.All", "User.Read.All"], "directory_roles": []}]
    return {
        "tenant_id": tid, "tenant_type": tenant_type, "default_domain": domain,
        "organization": {"id": tid, "displayName": "Contoso (emulated)",
                         "verifiedDomains": [{"name": domain, "isDefault": True, "isInitial": True,
                                              "type": "Managed", "capabilities": "Email, OfficeCommunicationsOnline"},
                                             {"name": onprem_domain, "isDefault": False, "isInitial": False,
                                              "type": "Managed", "capabilities": "None"}],
                         "onPremisesSyncEnabled": True},
        "skus": default_skus(), "apps": apps, "managed_identities": mis,
        "users": out_users, "groups": out_groups, "devices": devices, "service_principals": sps,
        "org_contacts": contacts,
        "memberships": {g: m for g, m in member_map.items() if m},
    }


def default_app(rng=None, certificates=None, permissions=None, client_id=None, secret=DEFAULT_SECRET):
    rng = rng or random.Random(0)
    return {"client_id": client_id or _guid(rng), "display_name": "cloud_sync writeback",
            "principal_id": _guid(rng), "secrets": [secret], "certificates": list(certificates or []),
            "permissions": list(permissions if permissions is not None else DEFAULT_PERMISSIONS),
            "directory_roles": [HYBRID_ADMIN_ROLE]}


if __name__ == "__main__":  # pragma: no cover - manual use
    import json
    import sys
    import time
    t = time.time()
    ten = generate_tenant(groups=2000, users=20000, memberships=200000, big_group_members=50001, seed=1)
    n = sum(len(v) for v in ten["memberships"].values())
    sys.stderr.write("generated %d users, %d groups, %d memberships in %.2fs\n"
                     % (len(ten["users"]), len(ten["groups"]), n, time.time() - t))
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as fh:
            json.dump(ten, fh)
