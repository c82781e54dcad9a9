"""The roles and playbooks, run with ansible-playbook against the lab's two forests and the Graph
emulator: the check-mode drift report (its JSON and Markdown content, old and new values), a real
run that writes both forests as two inventory hosts in parallel (forks 2), a second run that
changes nothing and, with the Graph delta state, sends one Graph request per domain, drift after a
manual change in AD, and the Windows-only role's syntax and argument-spec validation.

The emulator's tenant is seeded from the lab's own users (same objectGUID/objectSid), so members
resolve; each forest's copy of a group holds only that forest's users. Every run of this module
writes into its own OU at the root of each forest (created here, removed at the end), with fresh
group ids, so it never meets other tests sharing the lab.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import pathlib
import random
import re
import subprocess
import sys
import uuid

import pytest
import yaml

from emulator.fixtures import CLIENT_ID, CLIENT_SECRET, build_tenant, start_with_credentials
from writeback_helpers import Directory, dn_key, values

ROOT = pathlib.Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".build" / "collections"
PLAYBOOKS = ROOT / "playbooks"
LAB_INVENTORY = PLAYBOOKS / "inventory" / "lab.yml"
ANSIBLE_PLAYBOOK = str(ROOT / ".venv" / "bin" / "ansible-playbook")

# Named groups of the test tenant (ids made fresh per run, see tenant()).
MIXED = "Roles Mixed Team"          # corp and fabrikam users, a cloud-only user, a device, a nested group
NESTED = "Roles Nested Auditors"    # corp users only, member of MIXED
FAB_ONLY = "Roles Fabrikam Only"    # fabrikam users only
MAIL = "Roles Mail Enabled"         # mail-enabled: not eligible, never written


# ------------------------------------------------------------------------------------------ set-up

def _recap(output):
    """{host: {ok, changed, failed, ...}} from the PLAY RECAP (the last one of the output)."""
    recap = output[output.rindex("PLAY RECAP"):] if "PLAY RECAP" in output else ""
    hosts = {}
    for m in re.finditer(r"^(\S+)\s*:\s*((?:\w+=\d+\s*)+)$", recap, re.M):
        hosts[m.group(1)] = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2)))
    assert hosts, "no PLAY RECAP line in the output:\n" + output[-3000:]
    return hosts


def _recap_changed(output):
    return sum(h["changed"] for h in _recap(output).values())


class _Dirs(object):
    """A fresh admin connection per use (``with sandbox["dirs"]["corp"] as d:``): a connection held
    for the whole module would not survive a DC restart by another test sharing the lab."""

    def __init__(self, forest):
        self.forest = forest
        self._d = None

    def __enter__(self):
        self._d = Directory(self.forest)
        return self._d

    def __exit__(self, *exc):
        self._d.close()


@pytest.fixture(scope="module")
def sandbox(lab, corp, fabrikam):
    """One OU at the root of each forest (same relative name), removed afterwards."""
    name = "RolesTest-%s" % uuid.uuid4().hex[:8]
    dirs = {"corp": _Dirs(corp), "fabrikam": _Dirs(fabrikam)}
    ous = {}
    for fname, dirs_of in dirs.items():
        with dirs_of as d:
            ous[fname] = d.make_ou(name, parent=d.forest.base_dn)
    try:
        yield {"ou_rdn": "OU=" + name, "ous": ous, "dirs": dirs}
    finally:
        for fname, dirs_of in dirs.items():
            with dirs_of as d:
                d.remove_tree(ous[fname])


@pytest.fixture(scope="module")
def tenant(corp, fabrikam):
    """Tenant seeded from the lab's identities; returns (tenant dict, facts for the assertions)."""
    corp_ids = [i for i in corp.identities if i.get("enabled", True)][:12]
    fab_ids = [i for i in fabrikam.identities if i.get("enabled", True)][:12]
    seed = random.SystemRandom().randrange(1, 2 ** 31)
    t = build_tenant(identities=corp_ids + fab_ids, groups=6, users=len(corp_ids) + len(fab_ids) + 4,
                     memberships=40, nesting_depth=1, big_group_members=0, seed=seed)
    by_sam = {u["onPremisesSamAccountName"]: u for u in t["users"] if u.get("onPremisesSamAccountName")}
    cloud_only = [u for u in t["users"] if not u.get("onPremisesSyncEnabled")]
    gids = {name: str(uuid.uuid4()) for name in (MIXED, NESTED, FAB_ONLY, MAIL)}

    def uid(ident):
        return by_sam[ident["sam_account_name"]]["id"]

    def group(name, **extra):
        g = {"id": gids[name], "displayName": name, "description": "roles test " + name, "groupTypes": [],
             "securityEnabled": True, "mailEnabled": False, "mailNickname": name.replace(" ", "").lower()}
        g.update(extra)
        t["groups"].append(g)

    group(MIXED)
    group(NESTED)
    group(FAB_ONLY)
    group(MAIL, mailEnabled=True, mail="rolesmail@contoso.onmicrosoft.com")
    t["memberships"][gids[MIXED]] = ([uid(i) for i in corp_ids[:4]] + [uid(i) for i in fab_ids[:3]]
                                     + [cloud_only[0]["id"], t["devices"][0]["id"], gids[NESTED]])
    t["memberships"][gids[NESTED]] = [uid(i) for i in corp_ids[4:6]]
    t["memberships"][gids[FAB_ONLY]] = [uid(i) for i in fab_ids[3:7]]
    t["memberships"][gids[MAIL]] = [uid(i) for i in corp_ids[:2]]
    facts = {
        "gids": gids,
        "members": {
            ("corp", MIXED): {dn_key(i["dn"]) for i in corp_ids[:4]},
            ("fabrikam", MIXED): {dn_key(i["dn"]) for i in fab_ids[:3]},
            ("corp", NESTED): {dn_key(i["dn"]) for i in corp_ids[4:6]},
            ("fabrikam", NESTED): set(),
            ("corp", FAB_ONLY): set(),
            ("fabrikam", FAB_ONLY): {dn_key(i["dn"]) for i in fab_ids[3:7]},
        },
        "fab_users_of_mixed": {by_sam[i["sam_account_name"]]["id"] for i in fab_ids[:3]},
        "cloud_only_id": cloud_only[0]["id"],
        "spare_corp_user": corp_ids[10],
        "a_corp_member_dn": corp_ids[0]["dn"],
    }
    return t, facts


@pytest.fixture(scope="module")
def emulator(tenant):
    # Module scope (the runs below are one sequence over one tenant), built with the same helpers
    # as the graph_emulator fixture of tests/emulator/fixtures.py.
    emu = start_with_credentials(tenant[0])
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    """The Graph delta state of this module's runs (the emulator of this module issued it)."""
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def play(emulator, sandbox, state_dir, tmp_path_factory):
    """play(playbook, *extra_args, inventory=path, **extra_vars) -> (rc, output, json report or None).
    Two forks: the two domain hosts run in parallel."""
    reports = tmp_path_factory.mktemp("reports")
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "false",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "AZURE_TENANT_ID": emulator.tenant_id, "AZURE_CLIENT_ID": CLIENT_ID, "AZURE_CLIENT_SECRET": CLIENT_SECRET,
        "AZURE_AUTHORITY_HOST": emulator.authority_url, "CLOUDSYNC_GRAPH_ENDPOINT": emulator.base_url,
        "CLOUDSYNC_GRAPH_CA_BUNDLE": emulator.ca_file,
    })
    counter = [0]

    def run(playbook, *args, **extra_vars):
        counter[0] += 1
        name = "report%d" % counter[0]
        inventory = extra_vars.pop("inventory", LAB_INVENTORY)
        evars = {"cloudsync_lab_ou": sandbox["ou_rdn"], "cloudsync_report_dir": str(reports),
                 "cloudsync_report_name": name, "group_provisioning_report_name": name, "cloudsync_state_dir": str(state_dir)}
        evars.update(extra_vars)
        cmd = [ANSIBLE_PLAYBOOK, "-i", str(inventory), "--forks", "2", str(PLAYBOOKS / playbook), "-e", json.dumps(evars)] + list(args)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=str(ROOT), check=False)
        out = proc.stdout + proc.stderr
        report = reports / (name + ".json")
        data = json.loads(report.read_text()) if report.exists() else None
        md = reports / (name + ".md")
        if data is not None:
            data["_markdown"] = md.read_text() if md.exists() else None
        return proc.returncode, out, data
    return run


def _domain(report, name):
    return next(d for d in report["domains"] if d["name"] == name)


def _group(domain, gid):
    found = [g for g in domain["groups"] if g["id"] == gid]
    return found[0] if found else None


def _ad_group(sandbox, forest, gid):
    with sandbox["dirs"][forest] as d:
        return d.by_anchor(gid, base=sandbox["ous"][forest])


# ------------------------------------------------------------------------------------------ tests
# The tests below are one sequence (grant, check, real, again, drift); pytest runs them in file
# order. The lab inventory binds as the unprivileged svc-writeback, so the writeback only works
# once grant_permissions.yml gave it the UserGroupCreateDelete rights on the sandbox OU.

def test_grant_permissions_is_idempotent_and_check_mode_safe(play, sandbox):
    rc, out, dummy = play("grant_permissions.yml")
    assert rc == 0, out[-4000:]
    assert "corp / svc-writeback / UserGroupCreateDelete: changed" in out, out[-3000:]
    assert "fabrikam / svc-writeback / UserGroupCreateDelete: changed" in out, out[-3000:]
    assert sandbox["ous"]["corp"] in out
    rc, out, dummy = play("grant_permissions.yml")
    assert rc == 0, out[-4000:]
    assert _recap_changed(out) == 0, out[-4000:]
    assert "corp / svc-writeback / UserGroupCreateDelete: unchanged (0 ACE(s) added, 0 removed" in out
    # removal in check mode: reported, not done (a real run afterwards still finds the ACEs)
    rc, out, dummy = play("grant_permissions.yml", "--check", cloudsync_grant_state="absent")
    assert rc == 0, out[-4000:]
    assert "corp / svc-writeback / UserGroupCreateDelete: would change" in out
    assert re.search(r"corp / svc-writeback / UserGroupCreateDelete: would change \(0 ACE\(s\) added, [1-9]\d* removed", out), out
    rc, out, dummy = play("grant_permissions.yml")
    assert _recap_changed(out) == 0, out[-4000:]


def test_prereq_check_playbook_lists_every_check(play, sandbox):
    rc, out, dummy = play("prereq_check.yml")
    assert rc == 0, out[-4000:]
    for forest in ("corp", "fabrikam"):
        for check in ("ad_schema_attribute", "ad_target_ous", "ad_agent_permissions", "entra_connection", "entra_licence"):
            assert "OK   %s %s:" % (forest, check) in out, out[-4000:]
        assert "n/a  %s agent_version:" % forest in out
    assert "FAIL " not in out
    assert "All prerequisites are met." in out


def test_check_mode_reports_drift_and_writes_nothing(play, sandbox, tenant):
    facts = tenant[1]
    gids = facts["gids"]
    rc, out, report = play("drift_report.yml")
    assert rc == 0, out[-4000:]
    assert report is not None, "no JSON drift report was written:\n" + out[-3000:]
    assert report["check_mode"] is True and report["has_drift"] is True and report["changed"] is True
    assert report["failed_domains"] == []
    assert report["hosts"] == ["corp", "fabrikam"]
    assert gids[MAIL] not in {g["id"] for d in report["domains"] for g in d["groups"]}

    for forest in ("corp", "fabrikam"):
        dom = _domain(report, forest)
        assert dom["failed"] is False
        assert dom["entra"]["groups_in_scope"] >= 3
        assert dom["summary"]["created"] >= 3
        assert dom["summary"]["deleted"] == 0
        for name in (MIXED, NESTED, FAB_ONLY):
            g = _group(dom, gids[name])
            assert g is not None, "%s missing from the %s report" % (name, forest)
            assert g["action"] == "created"
            assert sandbox["ous"][forest].lower() in g["dn"].lower()
            users = {dn_key(dn) for dn in g["members_added"]} - {dn_key(g2["dn"]) for g2 in dom["groups"] if g2["dn"]}
            assert users == facts["members"][(forest, name)]
        # nested group written as member of its parent
        mixed = _group(dom, gids[MIXED])
        nested = _group(dom, gids[NESTED])
        assert dn_key(nested["dn"]) in {dn_key(dn) for dn in mixed["members_added"]}
        # the cloud-only user cannot be written anywhere
        not_written = {m["id"] for m in mixed["unresolved_members"] + mixed["skipped_members"]}
        assert facts["cloud_only_id"] in not_written

    corp_mixed = _group(_domain(report, "corp"), gids[MIXED])
    assert facts["fab_users_of_mixed"] <= {m["id"] for m in corp_mixed["unresolved_members"]}

    md = report["_markdown"]
    assert md.startswith("# Drift report")
    assert "check mode" in md
    assert "Groups to create" in md
    for name in (MIXED, NESTED, FAB_ONLY):
        assert name in md
    assert "Members to add" in md
    assert "Unresolved members" in md
    # a group to create lists the values it will get
    assert "    - description: `roles test %s`" % NESTED in md, md
    assert facts["a_corp_member_dn"].lower() in md.lower()

    for forest in ("corp", "fabrikam"):
        with sandbox["dirs"][forest] as d:
            assert d.children(sandbox["ous"][forest]) == [], "check mode wrote to " + forest


def test_real_run_writes_both_forests(play, sandbox, tenant, state_dir):
    """One ansible-playbook run (forks 2) writes both lab forests, each domain an inventory host of
    its own: the PLAY RECAP lists both hosts with changes, the tasks ran per host."""
    facts = tenant[1]
    gids = facts["gids"]
    rc, out, report = play("group_writeback.yml", cloudsync_report="always")
    assert rc == 0, out[-4000:]
    assert report["check_mode"] is False and report["changed"] is True
    assert "corp: changed" in out and "fabrikam: changed" in out
    recap = _recap(out)
    assert {"corp", "fabrikam"} <= set(recap), recap
    assert "localhost" not in recap, recap
    assert recap["corp"]["changed"] > 0 and recap["fabrikam"]["changed"] > 0, recap
    assert re.search(r"^changed: \[corp\]", out, re.M) and re.search(r"^changed: \[fabrikam\]", out, re.M), out[-4000:]
    assert report["hosts"] == ["corp", "fabrikam"]
    # the delta state of each domain, saved by the real run (all mode)
    for forest in ("corp", "fabrikam"):
        assert _domain(report, forest)["delta_state_path"] == str(state_dir / (forest + ".delta.json"))
        assert (state_dir / (forest + ".delta.json")).is_file()
    for forest in ("corp", "fabrikam"):
        nested_dn = None
        for name in (NESTED, MIXED, FAB_ONLY):
            found = _ad_group(sandbox, forest, gids[name])
            assert len(found) == 1, "%s not written to %s" % (name, forest)
            entry = found[0]
            members = {dn_key(dn) for dn in values(entry, "member")}
            expected = set(facts["members"][(forest, name)])
            if name == NESTED:
                nested_dn = entry["dn"]
            if name == MIXED:
                expected.add(dn_key(nested_dn))
            assert members == expected, "%s in %s" % (name, forest)
        assert _ad_group(sandbox, forest, gids[MAIL]) == []


def test_second_run_changes_nothing(play):
    """Nothing changed in Entra: with the delta state each domain's run sends one Graph request
    (the delta query), and changes nothing."""
    rc, out, report = play("group_writeback.yml", cloudsync_report="always")
    assert rc == 0, out[-4000:]
    assert _recap_changed(out) == 0, out[-4000:]
    assert set(_recap(out)) >= {"corp", "fabrikam"}
    assert report["changed"] is False
    for d in report["domains"]:
        assert d["changed"] is False
        assert d["graph_requests"] == 1, d
        assert d["entra"]["groups_in_scope"] >= 3
        assert d["summary"]["created"] == d["summary"]["updated"] == d["summary"]["deleted"] == 0
        assert d["summary"]["members_added"] == d["summary"]["members_removed"] == 0


def test_full_read_counts_the_groups_it_does_not_list(play, tenant):
    """Nothing changed. A full read (no delta state) in all mode lists an unchanged group only with
    findings (the module's unchanged_groups: findings): corp's copy of NESTED resolves every
    member, so it is not listed. The report still counts it in scope, as the delta run does."""
    gids = tenant[1]["gids"]
    rc, out, report = play("drift_report.yml")
    assert rc == 0, out[-4000:]
    in_scope = {d["name"]: d["entra"]["groups_in_scope"] for d in report["domains"]}
    assert all(d["incremental"] for d in report["domains"]), report["domains"]

    rc, out, report = play("drift_report.yml", cloudsync_state_dir="")
    assert rc == 0, out[-4000:]
    assert report["has_drift"] is False
    for d in report["domains"]:
        assert d["incremental"] is None
        assert d["entra"]["groups_in_scope"] == in_scope[d["name"]], (d["name"], in_scope)
        assert d["unchanged_groups"] + d["summary"].get("skipped", 0) == d["entra"]["groups_in_scope"], d["summary"]
    assert _group(_domain(report, "corp"), gids[NESTED]) is None


def test_domain_options_reach_the_writeback(play):
    """A domain's ad_timeout, ad_page_size, ad_write_connections and unchanged_groups (host
    variables cloudsync_*) are the writeback's options: its invocation (printed at -vvv) has them,
    and with unchanged_groups: all it lists every group."""
    rc, out, report = play("drift_report.yml", "-vvv", cloudsync_state_dir="", cloudsync_ad_timeout=45,
                           cloudsync_ad_page_size=500, cloudsync_ad_write_connections=1, cloudsync_unchanged_groups="all")
    assert rc == 0, out[-4000:]
    assert report["has_drift"] is False
    invocations = list(re.finditer(r'"ad_write_connections": (\d+)', out))
    assert len(invocations) == 2 and {m.group(1) for m in invocations} == {"1"}, out[-4000:]
    for option in ('"ad_timeout": 45', '"ad_page_size": 500', '"unchanged_groups": "all"', '"unchanged_not_listed": 0'):
        assert out.count(option) >= 2, option
    # the module's defaults otherwise
    rc, out, report = play("drift_report.yml", "-vvv", cloudsync_state_dir="")
    assert rc == 0, out[-4000:]
    assert {m.group(1) for m in re.finditer(r'"ad_write_connections": (\d+)', out)} == {"2"}
    assert '"unchanged_groups": null' in out


def test_drift_after_manual_change_in_ad(play, sandbox, tenant):
    facts = tenant[1]
    gids = facts["gids"]
    entry = _ad_group(sandbox, "corp", gids[MIXED])[0]
    removed = sorted(dn for dn in values(entry, "member") if dn_key(dn) in facts["members"][("corp", MIXED)])[0]
    stray = facts["spare_corp_user"]["dn"]
    with sandbox["dirs"]["corp"] as d:
        d.modify(entry["dn"], {"member": [("delete", [removed]), ("add", [stray])]})

    rc, out, report = play("drift_report.yml")
    assert rc == 0, out[-4000:]
    assert report["has_drift"] is True
    corp = _domain(report, "corp")
    g = _group(corp, gids[MIXED])
    assert [dn_key(d) for d in g["members_added"]] == [dn_key(removed)]
    assert [dn_key(d) for d in g["members_removed"]] == [dn_key(stray)]
    assert corp["summary"]["members_added"] == 1 and corp["summary"]["members_removed"] == 1
    fab = _domain(report, "fabrikam")
    assert fab["changed"] is False
    md = report["_markdown"]
    assert "Members to add (1)" in md and "Members to remove (1)" in md
    assert "Changed attributes" not in md   # members only
    assert removed.lower() in md.lower() and stray.lower() in md.lower()
    # check mode left AD as it was
    after = {dn_key(dn) for dn in values(_ad_group(sandbox, "corp", gids[MIXED])[0], "member")}
    assert dn_key(stray) in after and dn_key(removed) not in after

    # and a real run repairs it
    rc, out, report = play("group_writeback.yml", cloudsync_report="always")
    assert rc == 0, out[-4000:]
    after = {dn_key(dn) for dn in values(_ad_group(sandbox, "corp", gids[MIXED])[0], "member")}
    assert dn_key(removed) in after and dn_key(stray) not in after


def test_drift_report_shows_a_rename_and_the_run_renames(play, sandbox, tenant, emulator):
    facts = tenant[1]
    gid = facts["gids"][FAB_ONLY]
    before = {f: _ad_group(sandbox, f, gid)[0] for f in ("corp", "fabrikam")}
    emulator.admin.update_group(gid, displayName=FAB_ONLY + " Renamed")

    rc, out, report = play("drift_report.yml")
    assert rc == 0, out[-4000:]
    for forest in ("corp", "fabrikam"):
        g = _group(_domain(report, forest), gid)
        assert g["action"] == "renamed", g
        assert g["dn"].startswith("CN=%s Renamed_" % FAB_ONLY), g["dn"]
        assert dn_key(g["previous_dn"]) == dn_key(before[forest]["dn"])
    md = report["_markdown"]
    assert "Groups to rename" in md
    assert "(was `%s`)" % before["corp"]["dn"] in md
    # old and new values of what the rename changes
    assert "    - displayName: `%s` -> `%s Renamed`" % (FAB_ONLY, FAB_ONLY) in md, md
    assert "    - cn: `%s_%s` -> `%s Renamed_%s`" % (FAB_ONLY, gid[-12:], FAB_ONLY, gid[-12:]) in md, md

    rc, out, report = play("group_writeback.yml", cloudsync_report="always")
    assert rc == 0, out[-4000:]
    for forest in ("corp", "fabrikam"):
        after = _ad_group(sandbox, forest, gid)[0]
        assert after["dn"].startswith("CN=%s Renamed_" % FAB_ONLY)
        # the same object: renamed in place, not recreated
        assert values(after, "objectGUID") == values(before[forest], "objectGUID")


def test_drift_report_shows_old_and_new_values(play, sandbox, tenant, emulator):
    gid = tenant[1]["gids"][MIXED]
    emulator.admin.update_group(gid, description="roles test changed description")
    rc, out, report = play("drift_report.yml")
    assert rc == 0, out[-4000:]
    for forest in ("corp", "fabrikam"):
        g = _group(_domain(report, forest), gid)
        assert g["action"] == "updated", g
    md = report["_markdown"]
    assert "Groups to update" in md
    assert "Changed attributes (old -> new):" in md
    assert "    - description: `roles test %s` -> `roles test changed description`" % MIXED in md, md
    rc, out, report = play("group_writeback.yml", cloudsync_report="always")
    assert rc == 0, out[-4000:]
    assert values(_ad_group(sandbox, "corp", gid)[0], "description") == ["roles test changed description"]


def _inventory(tmp_path, per_host):
    """The lab inventory with host variables changed (per_host: {host: {var: value}})."""
    inv = yaml.safe_load(LAB_INVENTORY.read_text())
    hosts = inv["all"]["children"]["cloudsync_domains"]["hosts"]
    for host, extra in per_host.items():
        hosts[host].update(extra)
    inv["all"]["vars"]["cloudsync_lab_dir"] = str(ROOT / ".lab") if not os.environ.get("CLOUDSYNC_LAB_DIR") \
        else os.environ["CLOUDSYNC_LAB_DIR"]
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inv))
    return path


def test_domain_scope_narrowing_reports_the_deletions_it_would_make(play, sandbox, tenant, tmp_path):
    gids = tenant[1]["gids"]
    inventory = _inventory(tmp_path, {"fabrikam": {"cloudsync_domain_groups": [gids[FAB_ONLY]]}})
    rc, out, report = play("drift_report.yml", inventory=inventory, cloudsync_prune=True, cloudsync_out_of_scope="delete")
    assert rc == 0, out[-4000:]
    corp_d, fab = _domain(report, "corp"), _domain(report, "fabrikam")
    assert corp_d["changed"] is False and corp_d["summary"]["deleted"] == 0
    deleted = {g["id"] for g in fab["groups"] if g["action"] == "deleted"}
    assert {gids[MIXED], gids[NESTED]} <= deleted
    assert gids[FAB_ONLY] not in deleted
    assert fab["summary"]["deleted"] == len(deleted)
    assert "Groups to delete (%d)" % len(deleted) in report["_markdown"]
    # check mode: all still there
    for name in (MIXED, NESTED):
        assert len(_ad_group(sandbox, "fabrikam", gids[name])) == 1


def test_deletion_threshold_stops_pruning_in_every_domain(play, sandbox, tenant):
    facts = tenant[1]
    gids = facts["gids"]
    # Narrowing the scope to one group makes every other managed group of the sandbox a prune
    # candidate: more than the threshold, so nothing is deleted and both domains fail.
    rc, out, report = play("group_writeback.yml", cloudsync_report="always", cloudsync_all_groups=False,
                           cloudsync_groups=[gids[MIXED]], cloudsync_prune=True, cloudsync_out_of_scope="delete",
                           cloudsync_deletion_threshold=1)
    assert rc != 0, out[-4000:]
    assert "Writeback failed for domain corp" in out and "Writeback failed for domain fabrikam" in out, out[-4000:]
    recap = _recap(out)
    assert recap["corp"]["failed"] == 1 and recap["fabrikam"]["failed"] == 1, recap
    assert sorted(report["failed_domains"]) == ["corp", "fabrikam"]
    for forest in ("corp", "fabrikam"):
        dom = _domain(report, forest)
        assert dom["failed"] is True and "threshold" in dom["msg"].lower(), dom["msg"]
        for name in (NESTED, FAB_ONLY):
            assert len(_ad_group(sandbox, forest, gids[name])) == 1, "%s deleted from %s" % (name, forest)
    assert "The run failed for this domain" in report["_markdown"]


def test_failed_prerequisite_stops_before_writing(play, sandbox):
    missing = sandbox["ou_rdn"] + "-missing"
    rc, out, report = play("group_writeback.yml", cloudsync_lab_ou=missing)
    assert rc != 0
    assert "Prerequisites not met" in out, out[-3000:]
    assert report is None


# ----------------------------------------------------------------------- Windows role, no Windows

@pytest.fixture(scope="module")
def windows_collections():
    """ansible.windows, community.windows and microsoft.ad under .build/collections, from PyPI's
    ansible bundle (Galaxy is not reachable here): the same script tools/setup.sh runs."""
    subprocess.run([sys.executable, str(ROOT / "tools" / "windows_collections.py")], check=True, timeout=900)


def _ansible_playbook(args, tmp_path):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    proc = subprocess.run([ANSIBLE_PLAYBOOK] + args, capture_output=True, text=True, env=env, timeout=300,
                          cwd=str(tmp_path), check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("playbook", ["install_agent.yml", "group_writeback.yml", "drift_report.yml", "prereq_check.yml",
                                      "grant_permissions.yml"])
def test_playbook_syntax(windows_collections, tmp_path, playbook):
    rc, out = _ansible_playbook(["-i", str(LAB_INVENTORY), "--syntax-check", str(PLAYBOOKS / playbook)], tmp_path)
    assert rc == 0, out


AGENT_PLAY = """
- name: Validate the cloudsync_agent role's arguments
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: hybrid_identity.cloud_sync.cloudsync_agent
      vars: {vars}
"""


@pytest.mark.parametrize("bad_vars, message", [
    ({"cloudsync_agent_upgrade": "perhaps"}, "cloudsync_agent_upgrade"),
    ({"cloudsync_agent_gmsa_principals": {"not": "a list"}}, "cloudsync_agent_gmsa_principals"),
    ({"cloudsync_agent_create_gmsa": "yes please"}, "cloudsync_agent_create_gmsa"),
])
def test_agent_role_rejects_bad_arguments(windows_collections, tmp_path, bad_vars, message):
    (tmp_path / "play.yml").write_text(AGENT_PLAY.replace("{vars}", json.dumps(bad_vars)))
    # --tags: only the always-tagged argument validation runs (no Windows host here).
    rc, out = _ansible_playbook(["-i", "localhost,", "play.yml", "--tags", "argument_validation_only"], tmp_path)
    assert rc != 0, out
    assert "Validation of arguments failed" in out, out
    assert message in out, out


def test_agent_role_rejects_a_malformed_minimum_version(windows_collections, tmp_path):
    (tmp_path / "play.yml").write_text(AGENT_PLAY.replace("{vars}", json.dumps({"cloudsync_agent_min_version": "latest"})))
    rc, out = _ansible_playbook(["-i", "localhost,", "play.yml", "--tags", "argument_validation_only"], tmp_path)
    assert rc != 0, out
    assert "cloudsync_agent_min_version must be a dotted version" in out, out


def test_agent_role_accepts_good_arguments(windows_collections, tmp_path):
    good = {"cloudsync_agent_installer": "/srv/AADConnectProvisioningAgentSetup.exe", "cloudsync_agent_min_version": "1.1.3730.0",
            "cloudsync_agent_create_gmsa": True, "cloudsync_agent_gmsa_principals": ["AGENT1$"]}
    (tmp_path / "play.yml").write_text(AGENT_PLAY.replace("{vars}", json.dumps(good)))
    rc, out = _ansible_playbook(["-i", "localhost,", "play.yml", "--tags", "argument_validation_only"], tmp_path)
    assert rc == 0, out
    assert "Validating arguments against arg spec" in out, out
