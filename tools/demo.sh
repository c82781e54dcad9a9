#!/usr/bin/env bash
# The main job, end to end, on the embedded lab: one command on a fresh Debian 12 machine (root).
#
#   bash tools/demo.sh
#
# 1. installs what is needed (tools/setup.sh: Debian packages, .venv);
# 2. brings the lab up: two Samba AD forests, corp (127.0.0.2) and fabrikam (127.0.0.3)
#    (tests/lab/lab.py up; reused when already running);
# 3. starts the Graph emulator (tests/emulator/server.py) with a demo tenant whose synced users
#    are the lab's own AD users (same objectGUID/objectSid/immutable id, so members resolve);
# 4. grants the writeback account its AD permissions (playbooks/grant_permissions.yml), then
#    runs playbooks/group_writeback.yml with playbooks/inventory/lab.yml: one Entra read, a
#    writeback to each forest; prints what it did per domain;
# 5. runs it again and shows that nothing changed; then edits a group by hand in AD, shows the
#    drift report (check mode) and a third run repairing it;
# 6. access follows Entra: corp's DC serves an SMB share to Finance Team; users read it with
#    Kerberos tickets; ansible-rulebook (the event-driven writeback) carries a member's removal
#    and re-addition in Entra to AD within seconds, and a fresh ticket is denied, then reads again;
# 7. stops the emulator. The lab keeps running for reuse: `.venv/bin/python tests/lab/lab.py down`
#    stops it.
# Environment: CLOUDSYNC_LAB_DIR (default <repo>/.lab), DEMO_VERBOSITY (e.g. -v).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
  echo "demo: run as root (the lab adds loopback addresses and runs Samba DCs)" >&2
  exit 1
fi

say "Set-up (Debian packages, .venv)"
bash tools/setup.sh

PY="$here/.venv/bin/python"
export PATH="$here/.venv/bin:$PATH"
lab_dir="${CLOUDSYNC_LAB_DIR:-$here/.lab}"
export CLOUDSYNC_LAB_DIR="$lab_dir"

# The collection is found from the checkout: map the repository to its Galaxy name, as
# tests/conftest.py does.
collections="$here/.build/collections"
link="$collections/ansible_collections/hybrid_identity/cloud_sync"
if [ ! -e "$link" ]; then
  mkdir -p "$(dirname "$link")"
  ln -sfn "$here" "$link"
fi
export ANSIBLE_COLLECTIONS_PATH="$collections"
export ANSIBLE_DISPLAY_SKIPPED_HOSTS=false
verbosity=()
if [ -n "${DEMO_VERBOSITY:-}" ]; then verbosity=("$DEMO_VERBOSITY"); fi

# The forests' addresses: 127.0.0.2 and 127.0.0.3 unless CLOUDSYNC_LAB_IPS says otherwise (as in lab.py).
IFS=, read -r ip_corp ip_fabrikam _ <<<"${CLOUDSYNC_LAB_IPS:-}"
say "Lab: Samba AD forests corp (${ip_corp:-127.0.0.2}) and fabrikam (${ip_fabrikam:-127.0.0.3})"
"$PY" tests/lab/lab.py up

demo_dir="$lab_dir/demo"
mkdir -p "$demo_dir"
tenant="$demo_dir/tenant.json"
state="$demo_dir/emulator.json"
reports="$demo_dir/reports"

say "Graph emulator: demo tenant seeded from the lab's AD users"
"$PY" - "$lab_dir" "$tenant" <<'PYEOF'
import json, pathlib, sys
sys.path.insert(0, "tests")
from emulator.fixtures import build_tenant

lab_dir, out = pathlib.Path(sys.argv[1]), sys.argv[2]
idents = {}
for forest in ("corp", "fabrikam"):
    data = json.loads((lab_dir / forest / "identities.json").read_text())
    idents[forest] = [i for i in data if i.get("enabled", True)][:30]
every = idents["corp"] + idents["fabrikam"]
# Synced users = the lab's users; a few cloud-only users, devices, apps and contacts as noise;
# cloud security groups (some nested, some dynamic) and ineligible ones (Microsoft 365,
# mail-enabled, synced from AD) that must not be written back.
t = build_tenant(identities=every, groups=10, users=len(every) + 8, memberships=120, nesting_depth=2,
                 big_group_members=0, seed=20261123)
by_sam = {u["onPremisesSamAccountName"]: u["id"] for u in t["users"] if u.get("onPremisesSamAccountName")}
cloud_only = [u["id"] for u in t["users"] if not u.get("onPremisesSyncEnabled")]

def ids(forest, n, start=0):
    return [by_sam[i["sam_account_name"]] for i in idents[forest][start:start + n]]

named = [
    ("d0000000-0000-4000-8000-000000000001", "Finance Team", "Finance department",
     ids("corp", 6) + ids("fabrikam", 3) + cloud_only[:1] + [t["devices"][0]["id"]]),
    ("d0000000-0000-4000-8000-000000000002", "Finance Auditors", None, ids("corp", 2, 6)),
    ("d0000000-0000-4000-8000-000000000003", "Fabrikam Engineers", "Engineering at Fabrikam", ids("fabrikam", 8, 3)),
]
for gid, name, desc, members in named:
    t["groups"].append({"id": gid, "displayName": name, "description": desc, "groupTypes": [],
                        "securityEnabled": True, "mailEnabled": False, "mailNickname": name.lower().replace(" ", "")})
    t["memberships"][gid] = members
t["memberships"]["d0000000-0000-4000-8000-000000000001"].append("d0000000-0000-4000-8000-000000000002")
with open(out, "w") as fh:
    json.dump(t, fh)
print("demo tenant: %d users (%d synced from the lab), %d groups" % (
    len(t["users"]), len(every), len(t["groups"])))
PYEOF

rm -f "$state"
"$PY" tests/emulator/server.py --tenant "$tenant" --host 127.0.0.1 --port 0 --state-file "$state" --no-throttle \
  >"$demo_dir/emulator.log" 2>&1 &
emu_pid=$!
stop_emulator() {
  if kill -0 "$emu_pid" 2>/dev/null; then
    kill "$emu_pid" 2>/dev/null || true
    wait "$emu_pid" 2>/dev/null || true
    echo "demo: Graph emulator stopped"
  fi
}
trap stop_emulator EXIT
for _ in $(seq 1 100); do
  [ -s "$state" ] && break
  kill -0 "$emu_pid" 2>/dev/null || { echo "demo: the emulator did not start:" >&2; cat "$demo_dir/emulator.log" >&2; exit 1; }
  sleep 0.2
done
[ -s "$state" ] || { echo "demo: the emulator did not start in time" >&2; exit 1; }

# The modules read their Graph options from the environment (an AWX credential does the same).
eval "$("$PY" - "$state" <<'PYEOF'
import json, shlex, sys
sys.path.insert(0, "tests")
from emulator.fixtures import CLIENT_ID, CLIENT_SECRET
s = json.load(open(sys.argv[1]))
env = {"AZURE_TENANT_ID": s["tenant_id"], "AZURE_CLIENT_ID": CLIENT_ID, "AZURE_CLIENT_SECRET": CLIENT_SECRET,
       "AZURE_AUTHORITY_HOST": s["authority_url"], "CLOUDSYNC_GRAPH_ENDPOINT": s["base_url"],
       "CLOUDSYNC_GRAPH_CA_BUNDLE": s["ca_file"]}
for k, v in env.items():
    print("export %s=%s" % (k, shlex.quote(v)))
PYEOF
)"
echo "emulator: $CLOUDSYNC_GRAPH_ENDPOINT (tenant $AZURE_TENANT_ID)"

summary() {
  "$PY" - "$1" "$2" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
# The report of roles/group_provisioning/tasks/report.yml: one entry per domain (inventory host).
print("%s: Graph requests %s; Entra groups left out as not eligible: %d" % (
    sys.argv[2], r["entra"]["graph_requests"], len(r["entra"]["skipped"])))
for d in r["domains"]:
    s = d["summary"]
    if d["failed"]:
        print("  %-9s FAILED: %s" % (d["name"], d["msg"]))
        continue
    print("  %-9s %-9s in scope %s: created %d, updated %d, renamed %d, moved %d, deleted %d, unchanged %d, skipped %d; "
          "members +%d -%d, unresolved %d (not in this forest or not synced)" % (
              d["name"], "changed" if d["changed"] else "unchanged", d["entra"]["groups_in_scope"], s["created"], s["updated"], s["renamed"],
              s["moved"], s["deleted"], s["unchanged"], s["skipped"], s["members_added"], s["members_removed"],
              s["unresolved_members"]))
    for g in d["groups"]:
        if g["action"] not in ("unchanged", "skipped"):
            print("      %-8s %s" % (g["action"], g["dn"]))
print("  overall: %s" % ("CHANGED" if r["changed"] else "nothing changed"))
PYEOF
}

run_writeback() {
  ansible-playbook -i playbooks/inventory/lab.yml playbooks/group_writeback.yml \
    -e cloudsync_report=always -e "cloudsync_report_dir=$reports" -e "group_provisioning_report_name=$1" "${verbosity[@]}"
}

say "Target OU: a fresh OU=CloudSyncDemo in both forests (the demo's groups live only there)"
"$PY" - <<'PYEOF'
import ssl, sys
sys.path.insert(0, "tests")
import ldap3
from lab.lab import Lab
lab = Lab()
for name in ("corp", "fabrikam"):
    f = lab.forest(name)
    tls = ldap3.Tls(ca_certs_file=f.ca_file, validate=ssl.CERT_REQUIRED)
    conn = ldap3.Connection(ldap3.Server(f.ip, port=636, use_ssl=True, tls=tls), f.admin_upn, f.admin_password,
                            auto_bind=True)
    dn = "OU=CloudSyncDemo," + f.base_dn
    # Start from an empty OU every time, so run 1 always shows the groups being created.
    if conn.search(dn, "(objectClass=organizationalUnit)", search_scope=ldap3.BASE):
        if not conn.delete(dn, controls=[("1.2.840.113556.1.4.805", True, None)]):  # tree delete
            sys.exit("%s: cannot remove the previous %s: %s" % (name, dn, conn.result))
    if not conn.add(dn, "organizationalUnit", {"description": "Groups written back by tools/demo.sh"}):
        sys.exit("%s: cannot create %s: %s" % (name, dn, conn.result))
    print("%s: %s (empty)" % (name, dn))
    conn.unbind()
PYEOF

say "Permissions: let the writeback account (svc-writeback) manage groups in OU=CloudSyncDemo"
# As each forest's Administrator, the ACEs of Set-AADCloudSyncPermissions -PermissionType
# UserGroupCreateDelete; the writeback itself then binds as the unprivileged svc-writeback.
ansible-playbook -i playbooks/inventory/lab.yml playbooks/grant_permissions.yml "${verbosity[@]}"

say "Run 1: write Entra cloud groups back to both forests"
run_writeback run1
say "What run 1 did"
summary "$reports/run1.json" "run 1"

say "Run 2: the same again (idempotent: nothing to change)"
run_writeback run2
say "What run 2 did"
summary "$reports/run2.json" "run 2"
if "$PY" -c 'import json,sys; sys.exit(1 if json.load(open(sys.argv[1]))["changed"] else 0)' "$reports/run2.json"; then
  echo "run 2 changed nothing: the writeback is idempotent"
else
  echo "demo: run 2 changed something: not idempotent" >&2
  exit 1
fi

say "Drift: someone edits Finance Team in corp by hand (removes a member, adds another)"
"$PY" - <<'PYEOF'
import ssl, sys
sys.path.insert(0, "tests")
import ldap3
from lab.lab import Lab
f = Lab().forest("corp")
tls = ldap3.Tls(ca_certs_file=f.ca_file, validate=ssl.CERT_REQUIRED)
conn = ldap3.Connection(ldap3.Server(f.ip, port=636, use_ssl=True, tls=tls), f.admin_upn, f.admin_password, auto_bind=True)
group = "CN=Finance Team_000000000001,OU=CloudSyncDemo," + f.base_dn
conn.search(group, "(objectClass=group)", search_scope=ldap3.BASE, attributes=["member"])
users = sorted(m for m in conn.entries[0].member.values if "OU=Staff" in m)
stray = "CN=corp-user0040,OU=Staff," + f.base_dn
conn.modify(group, {"member": [(ldap3.MODIFY_DELETE, [users[0]]), (ldap3.MODIFY_ADD, [stray])]})
print("removed %s, added %s: %s" % (users[0].split(",")[0], stray.split(",")[0], conn.result["description"]))
PYEOF

say "Drift report (check mode: nothing is written)"
ansible-playbook -i playbooks/inventory/lab.yml playbooks/drift_report.yml \
  -e "cloudsync_report_dir=$reports" -e cloudsync_report_name=drift "${verbosity[@]}" >"$demo_dir/drift.log" 2>&1 \
  || { cat "$demo_dir/drift.log"; exit 1; }
summary "$reports/drift.json" "drift report"
echo "  excerpt of $reports/drift.md:"
awk '/^### Groups to update/ {on=1; print "    " $0; next} /^##/ {on=0} on {print "    " $0}' "$reports/drift.md"

say "Run 3: the writeback repairs the manual change"
run_writeback run3 >"$demo_dir/run3.log" 2>&1 || { cat "$demo_dir/run3.log"; exit 1; }
summary "$reports/run3.json" "run 3"

say "Access follows Entra: an SMB share on corp's DC for Finance Team, read with Kerberos tickets"
# corp's DC serves [finance] to Finance Team (its objectSid, as a Windows ACL would). The
# event-driven writeback (ansible-rulebook, rulebook hybrid_identity.cloud_sync.group_writeback,
# polling Graph every 5 s, binding as svc-writeback) carries membership changes made in Entra to
# AD; each read is a fresh kinit + smbclient --use-kerberos=required.
"$PY" - "$state" "$demo_dir" "$lab_dir" <<'PYEOF'
import json, os, signal, subprocess, sys, time
sys.path.insert(0, "tests")
import ldap3, ssl
from lab.lab import Lab
from emulator.server import RemoteAdmin

state, demo_dir, lab_dir = sys.argv[1], sys.argv[2], sys.argv[3]
info = json.load(open(state))
admin = RemoteAdmin(info["base_url"], info["ca_file"])
lab = Lab()
f = lab.forest("corp")
ou = "OU=CloudSyncDemo," + f.base_dn
team_id = "d0000000-0000-4000-8000-000000000001"
tls = ldap3.Tls(ca_certs_file=f.ca_file, validate=ssl.CERT_REQUIRED)
conn = ldap3.Connection(ldap3.Server(f.ip, port=636, use_ssl=True, tls=tls), f.admin_upn, f.admin_password, auto_bind=True)
conn.search(ou, "(msDS-ExternalDirectoryObjectId=Group_%s)" % team_id, attributes=["objectSid", "member"])
team_dn, team_sid = conn.entries[0].entry_dn, str(conn.entries[0].objectSid.value)
idents = [i for i in json.load(open(os.path.join(lab_dir, "corp", "identities.json"))) if i.get("enabled", True)][:30]
direct, nested, outsider = idents[0], idents[6], idents[20]   # Finance Team / via Finance Auditors / neither
lab.smb_share("finance", team_sid, {"budget.txt": "FY27 budget: for Finance Team only\n"})
print("share //%s/finance (valid users = %s, the objectSid of %s)" % (f.dc_hostname, team_sid, team_dn))

def access(who, why, expected):
    ok, text = f.smb_read("finance", "budget.txt", "%s@%s" % (who["sam_account_name"], f.realm), who["password"],
                          os.path.join(demo_dir, "ccache-%s" % who["sam_account_name"]))
    print("  %-14s (%s): %s" % (who["sam_account_name"], why, "reads %r" % text.strip() if ok else text))
    if ok != expected or (not ok and "NT_STATUS_ACCESS_DENIED" not in text):
        sys.exit("demo: %s should %s the share" % (who["sam_account_name"], "read" if expected else "be denied"))

def member_in_ad(who):
    conn.search(team_dn, "(objectClass=group)", search_scope=ldap3.BASE, attributes=["member"])
    return who["dn"].lower() in [m.lower() for m in conn.entries[0].member.values]

access(direct, "member of Finance Team", True)
access(nested, "member through nested Finance Auditors", True)
access(outsider, "not a member", False)

env = dict(os.environ, CLOUDSYNC_EDA_STATE_PATH=os.path.join(demo_dir, "eda-delta.json"), CLOUDSYNC_EDA_POLL_INTERVAL="5",
           CLOUDSYNC_AD_SERVERS=f.ip, CLOUDSYNC_AD_USER=f.unprivileged_upn, CLOUDSYNC_AD_PASSWORD=f.unprivileged_password,
           CLOUDSYNC_AD_CA_FILE=f.ca_file, CLOUDSYNC_TARGET_OU=ou, CLOUDSYNC_SEARCH_BASE=ou)
if os.path.exists(env["CLOUDSYNC_EDA_STATE_PATH"]):
    os.unlink(env["CLOUDSYNC_EDA_STATE_PATH"])
inventory = os.path.join(demo_dir, "eda-inventory.yml")
with open(inventory, "w") as fh:
    fh.write("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n      ansible_python_interpreter: %s\n"
             % sys.executable)
log = open(os.path.join(demo_dir, "rulebook.log"), "w")
rb = subprocess.Popen(["ansible-rulebook", "-i", inventory, "--rulebook", "hybrid_identity.cloud_sync.group_writeback"],
                      stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
try:
    while not os.path.exists(env["CLOUDSYNC_EDA_STATE_PATH"]):
        if rb.poll() is not None:
            sys.exit("demo: ansible-rulebook stopped; see %s" % log.name)
        time.sleep(0.2)
    print("ansible-rulebook is watching Entra (Graph delta every 5 s); log: %s" % log.name)
    direct_id = next(u["id"] for u in admin.export_tenant()["users"]
                     if u.get("onPremisesSamAccountName") == direct["sam_account_name"])
    for action, present in (("removed from", False), ("added back to", True)):
        started = time.time()
        (admin.add_members if present else admin.remove_members)(team_id, [direct_id])
        while member_in_ad(direct) != present:
            if rb.poll() is not None or time.time() - started > 180:
                sys.exit("demo: the change did not reach AD; see %s" % log.name)
            time.sleep(0.2)
        print("%s %s Finance Team in Entra: in AD %.1f s later" % (direct["sam_account_name"], action, time.time() - started))
        access(direct, "fresh ticket", present)
        access(nested, "fresh ticket", True)
finally:
    os.killpg(rb.pid, signal.SIGTERM)
    rb.wait(30)
    lab.remove_smb_share("finance")
PYEOF

say "Done"
echo "Reports (JSON for machines, Markdown for people) in $reports: run1, run2, drift, run3 (.json, .md)"
echo "A drift report needs Graph: with an emulator running (as above), export its AZURE_*/CLOUDSYNC_GRAPH_* variables and run"
echo "  ansible-playbook -i playbooks/inventory/lab.yml playbooks/drift_report.yml"
echo "The lab is still running for reuse; stop it with: .venv/bin/python tests/lab/lab.py down"
