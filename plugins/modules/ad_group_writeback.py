#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: ad_group_writeback
short_description: Write Entra ID cloud security groups back into Active Directory
version_added: 0.1.0
description:
  - Makes on-premises Active Directory hold the cloud security groups that Microsoft Entra ID holds, as Entra Cloud Sync's
    "group provisioning to Active Directory" does, and reconciles manual changes made in AD.
  - Reads the groups and their members from Microsoft Graph (or takes them from O(entra_groups)), reads the groups it manages
    in AD (found by their anchor C(msDS-ExternalDirectoryObjectId=Group_<objectId>)), resolves members through the Global
    Catalog, plans the operations, and executes them. In check mode it returns the plan (the drift) and writes nothing.
  - Each written-back group is a universal security group named C(<display name, 51 characters>_<last 12 characters of the
    objectId>), with C(displayName), C(description) (448 characters), C(adminDescription) and C(msDS-ExternalDirectoryObjectId)
    set to C(Group_<objectId>). Renames and moves keep the objectGUID and objectSid, so ACLs naming the group keep working.
  - Only objects carrying the anchor are ever modified or deleted; groups with C(adminCount=1) are refused unless
    O(allow_admin_count=true); a run that would delete more than O(deletion_threshold) groups deletes none.
author:
  - hybrid_identity.cloud_sync maintainers (@hybrid-identity)
extends_documentation_fragment:
  - hybrid_identity.cloud_sync.ad_connection
  - hybrid_identity.cloud_sync.graph_auth
attributes:
  check_mode:
    support: full
    description: Returns the plan (every operation that would run) and writes nothing.
  diff_mode:
    support: full
    description:
      - Returns one diff per group that changes, headed by its distinguished name (before - the DN it had, after - the DN it
        gets), with the attributes and members before and after.
  platform:
    support: full
    platforms: posix
    description:
      - Runs on the controller or any host with the Python libraries; talks LDAP to the domain controllers and HTTPS to Graph.
        Nothing is installed on the domain controllers.
requirements:
  - ldap3 >= 2.9.1
  - msal >= 1.28.0 (not needed with O(entra_groups))
  - requests (not needed with O(entra_groups))
  - gssapi (only for O(ad_auth=kerberos))
  - pyspnego (only for O(ad_auth=ntlm))
options:
  groups:
    description:
      - Selected mode. Entra group object ids or display names to write back.
      - A display name that matches several groups selects none of them (it is reported in RV(ambiguous) and as a warning);
        select such groups by id. A selection that matches no group is reported in RV(not_found).
    type: list
    elements: str
  all_groups:
    description:
      - All mode. Write back every cloud security group of the tenant that is eligible (security enabled, not mail enabled,
        not Microsoft 365, not synced from AD), optionally narrowed by O(group_filter).
    type: bool
    default: false
  group_filter:
    description:
      - OData C($filter) ANDed with the built-in eligibility clause, in all mode. For example C(startswith(displayName,'SG-')).
      - A filter naming a property only Graph C(beta) has (C(writebackConfiguration/isEnabled eq true)) is sent to C(beta)
        (C(v1.0) does not know it).
      - Sized to Graph's documented limits (at most 15 expressions in a filter with C(in) and C(eq) values of at most 120
        characters without advanced query, a URL of at most 2,048 characters with it).
    type: str
  writeback_enabled_only:
    description:
      - Write back only groups whose C(writebackConfiguration/isEnabled) (Graph C(beta), "isWritebackEnabled" in the admin
        center) is true, like a Cloud Sync scoping filter on that flag. Groups are then read from C(beta).
      - Other groups are out of scope; a selected one (O(groups)) is reported in the warnings and not written.
    type: bool
    default: false
  entra_groups:
    description:
      - Groups as returned by M(hybrid_identity.cloud_sync.entra_group_info) (its RV(hybrid_identity.cloud_sync.entra_group_info#module:groups)),
        read with members. Graph is not read again, so one read can feed several domains or forests.
    type: list
    elements: dict
  target_ou:
    description:
      - Distinguished name of the container new groups are created in. Defaults to C(CN=Users,<domain DN>).
      - Groups already written back elsewhere are moved here when their mapped container changes.
    type: str
  ou_map:
    description:
      - Per-group containers, first match wins; groups that match none go to O(target_ou).
      - Each item has C(ou) and one of C(id) (Entra object id), C(name) (exact display name, case-insensitive), C(pattern) (a
        Python regular expression searched in the display name) or C(glob) (a shell-style pattern on the whole display name,
        case-insensitive).
    type: list
    elements: dict
    default: []
  naming:
    description:
      - V(cloud_sync) names groups C(<display name>_<last 12 characters of the id>) as Entra Cloud Sync does.
      - V(writeback_v2) names them C(Group_<id>) as Connect Sync Group Writeback v2 did.
    type: str
    default: cloud_sync
    choices: [cloud_sync, writeback_v2]
  sam_account_name_template:
    description:
      - Python format string for C(sAMAccountName), with fields C(display_name), C(id), C(id_suffix) (last 12 characters of the
        id) and C(cn), for example C({display_name:.7}_{id_suffix}). Characters AD forbids in the name become C(_), and the result
        is cut to 256 characters; keep it to 20 characters where applications that use pre-Windows 2000 names must read it.
      - Unset, AD generates one, as Cloud Sync leaves it. A name already taken is an error for that group.
    type: str
  membership:
    description:
      - V(authoritative) makes each AD group's members exactly the resolved Entra members (manual additions in AD are removed).
      - V(additive) only adds; members added in AD are kept.
    type: str
    default: authoritative
    choices: [authoritative, additive]
  member_match:
    description:
      - How Entra users are found in AD (through the Global Catalog).
      - V(auto) tries C(onPremisesObjectIdentifier) (objectGUID), then C(onPremisesSecurityIdentifier) (objectSid), then
        C(onPremisesImmutableId) (base64 of objectGUID or mS-DS-ConsistencyGuid), and reports which matched.
      - An immutable id is looked up by objectGUID in the Global Catalog. mS-DS-ConsistencyGuid is not in the Global Catalog
        and not indexed, so the ids still unresolved are then looked up by it through the domain's own LDAP connection (the
        O(domain_controllers)), in one search that scans the domain's users. Only users of this domain (by their
        C(onPremisesDomainName), or without one) are looked for; users of other domains are not found by their consistency GUID.
    type: str
    default: auto
    choices: [auto, object_identifier, sid, immutable_id]
  max_members:
    description:
      - Groups with more direct members (a nested group counts as one) are skipped and reported; the run goes on.
    type: int
    default: 50000
  prune:
    description:
      - Delete the AD copy (a managed group under O(search_base)) of an Entra group that was deleted in Entra, as Cloud Sync
        does; still guarded by O(deletion_threshold). Whether a group was deleted is asked of Graph (C(GET /groups/{id}) answers
        404) for every managed group that is not in the run's scope.
      - In selected mode (O(groups)) the managed groups outside the selection are looked at too (without their members); the
        copy of a group deleted in Entra is deleted whichever selection wrote it; the copy of a group that still exists is not
        this run's business and is left out of the result.
      - With O(entra_groups) Graph is not asked, so no group is known to be deleted; see O(out_of_scope).
      - V(false) deletes nothing at all (whatever O(out_of_scope) says); such groups are reported as C(orphaned).
    type: bool
    default: true
  out_of_scope:
    description:
      - What happens to the AD copy of a group that still exists in Entra but left the run's scope (deselected, no longer
        matching O(group_filter), or ineligible now, for example mail-enabled; a group over O(max_members) is not out of
        scope and is always kept), and, with O(entra_groups), of every managed group not passed.
      - V(keep) (default) leaves it in place, reported C(orphaned) (or C(skipped)) with the reason. Cloud Sync documents a
        delete for a hard-deleted group only, and AD groups cannot be disabled, so leaving scope is not taken as a delete.
      - V(delete) deletes it (with O(prune), under O(deletion_threshold)). In selected mode this deletes every managed group
        under O(search_base) that is not selected, so give each selection its own O(search_base).
    type: str
    default: keep
    choices: [keep, delete]
  soa_move:
    description:
      - For a group whose source of authority was moved from AD to the cloud (C(onPremisesSyncBehavior/isCloudManaged)), the
        module writes it back onto its original AD group (found by objectSid), never a new copy, and adds the anchor.
      - V(false) (default) keeps the original's name (cn), OU and sAMAccountName, also after later renames in Entra (only
        C(displayName) and C(description) follow). V(true) renames and moves it to the O(naming) scheme and O(target_ou) /
        O(ou_map) like any other group.
      - An original that is not a universal security group is not written; the result says what to change.
    type: bool
    default: false
  prune_empty_scope:
    description:
      - With O(prune) in all mode, allow a run that finds no Entra group in scope to delete every managed group under
        O(search_base). Refused by default, because an empty scope is far more often a O(group_filter) typo, a wrong
        tenant or an empty O(entra_groups) than an intent. Selected mode (O(groups)) is bounded by its selection and
        not affected.
      - Also allows a full all-mode run in which not one managed group belongs to an Entra group in scope to delete them
        all (refused by default, since that is what credentials for another tenant look like).
    type: bool
    default: false
  deletion_threshold:
    description:
      - Accidental-deletion prevention. A run that would delete more groups than this deletes none and fails, naming the count.
    type: int
    default: 500
  allow_admin_count:
    description:
      - Also modify and delete managed groups that carry C(adminCount=1) (protected by AdminSDHolder). Refused by default.
    type: bool
    default: false
  adopt_writeback_v2:
    description:
      - Take over groups written by Connect Sync Group Writeback v2 (C(adminDescription=Group_<id>) and no anchor) by copying
        the anchor into C(msDS-ExternalDirectoryObjectId); from then on they are managed like any other.
    type: bool
    default: false
  adopt_rename:
    description:
      - With O(adopt_writeback_v2), also rename adopted groups to the O(naming) scheme.
    type: bool
    default: false
  search_base:
    description:
      - Where managed groups are looked for. Defaults to the domain's naming context.
    type: str
  fail_on_not_found:
    description:
      - In selected mode (O(groups)), fail the run, naming them, when a selected id or display name matches no Entra group.
        Checked before anything is written.
      - V(false) writes the groups found and reports the others in RV(not_found) and as a warning.
    type: bool
    default: false
  delta_state_path:
    description:
      - File in which the Graph delta link and the last membership are kept between runs. With it, later runs read only what
        changed in Entra (Graph delta query) instead of every group and member; a rejected or expired delta link makes the
        run read everything again.
      - Not used with O(entra_groups).
      - The member lists are kept beside it, in a file named after it with C(.members-) and a token appended (mode 0600, like
        the state file), so that a run in which nothing changed reads and rewrites only the small state file. Remove both to start
        again from a full read; a state file whose members file is missing or does not match is refused with that advice.
      - Checked before the first write to AD (in check mode too); a run whose state file cannot be written writes nothing.
    type: path
  member_details:
    description:
      - How many members the result lists. V(sample) (the default) keeps the first O(member_sample_size) entries of each member
        list of RV(groups) and adds their counts (C(members_added_count), C(skipped_members_count), ...) and, for skipped and
        unresolved members, counts by reason; the operations of RV(plan) give their member lists as counts only
        (C(members_count), C(add_count), C(remove_count)), the same DNs being in the group's entry of RV(groups). A first run
        on a large tenant would otherwise return megabytes of DNs, and AWX stores every job's result.
      - V(full) returns every list in full. O(report_path) writes the full lists to a file in either mode.
    type: str
    choices: [sample, full]
    default: sample
  member_sample_size:
    description:
      - With O(member_details=sample), how many entries of each member list are returned.
    type: int
    default: 20
  ad_write_connections:
    description:
      - How many LDAP connections to the domain controller the run writes on at once (1 to 8). Member and attribute changes of
        groups that already exist, naming no group this run creates, renames or moves, are spread over them, each group's
        changes in order on one connection; creates, renames, moves and deletes are sent one at a time in the plan's order.
      - A DC works on requests of several connections at the same time; the lab's Samba DC wrote 600 member changes in
        0.84 of the time on 2 connections (C(benchmarks/write_concurrency.py)). V(1) sends every write on one connection.
    type: int
    default: 2
  unchanged_groups:
    description:
      - Which unchanged groups RV(groups) lists. V(all) lists every group in scope. V(findings) lists an unchanged group
        only when it has something to report (members that cannot be written, a reason, a note, an adoption); the others
        are counted in RV(summary) (C(unchanged)) and RV(unchanged_not_listed). Groups that were (or would be) written,
        skipped, orphaned or in error are always listed.
      - Default V(findings) with O(all_groups), where a scheduled run of a large tenant would otherwise return an entry
        for each of thousands of unchanged groups on every run (AWX stores every job's result), and V(all) when O(groups)
        or O(entra_groups) name the groups. O(report_path) lists every group in either mode.
    type: str
    choices: [all, findings]
  report_path:
    description:
      - JSON file to write the run's summary and every group's full member lists (added, removed, unresolved, skipped) to,
        mode 0600, in check mode too. Checked before the first write to AD.
    type: path
notes:
  - Run once per forest. Each forest's copy of a group holds only the members that exist in that forest.
  - Nested cloud groups are written as members only when the nested group is itself written back. In selected mode (O(groups))
    a cloud security group nested in a selected group is written back too, without its members (unless it is selected
    itself; its AD members are then neither added nor removed), and linked as a member of the parent, as Cloud Sync does.
seealso:
  - module: hybrid_identity.cloud_sync.entra_group_info
  - module: hybrid_identity.cloud_sync.cloudsync_permissions
  - name: Provision groups to Active Directory using Microsoft Entra Cloud Sync
    description: The service whose behaviour this module reproduces.
    link: https://learn.microsoft.com/entra/identity/hybrid/cloud-sync/tutorial-group-provisioning
'''

EXAMPLES = r'''
- name: Write back two groups, by id and by name
  hybrid_identity.cloud_sync.ad_group_writeback:
    tenant_id: "{{ tenant_id }}"
    client_id: "{{ client_id }}"
    client_secret: "{{ client_secret }}"
    domain_controllers: [dc1.corp.example.com, dc2.corp.example.com]
    ad_user: svc-writeback@corp.example.com
    ad_password: "{{ ad_password }}"
    ad_ca_file: /etc/pki/corp-ca.pem
    groups:
      - 6f1c3a55-0d2b-4c8e-9a5e-2d7f1b9c0a11
      - Finance Team
    target_ou: OU=Cloud Groups,DC=corp,DC=example,DC=com

- name: Drift report for every eligible group (check mode writes nothing)
  hybrid_identity.cloud_sync.ad_group_writeback:
    all_groups: true
    group_filter: "startswith(displayName,'SG-')"
    target_ou: OU=Cloud Groups,DC=corp,DC=example,DC=com
  check_mode: true
  register: drift

# Not eligible_only: with out_of_scope=delete, a group left out of entra_groups is deleted in AD, while
# an ineligible group passed in that grew past 50,000 members is skipped and kept.
- name: Read Entra once, write to two forests
  hybrid_identity.cloud_sync.entra_group_info:
    all_groups: true
    members: direct
  register: entra

- name: Write back to each forest
  hybrid_identity.cloud_sync.ad_group_writeback:
    entra_groups: "{{ entra.groups }}"
    domain_controllers: "{{ item.dcs }}"
    target_ou: "{{ item.ou }}"
    out_of_scope: delete
  loop: "{{ forests }}"
'''

RETURN = r'''
summary:
  description: Counts of what the run did (or, in check mode, would do).
  returned: always
  type: dict
  sample:
    created: 2
    updated: 1
    renamed: 0
    moved: 0
    deleted: 0
    unchanged: 40
    skipped: 1
    errors: 0
    orphaned: 0
    members_added: 120
    members_removed: 3
    unresolved_members: 4
groups:
  description:
    - One entry per Entra group in scope, and per managed AD group whose Entra group is gone; with
      O(unchanged_groups=findings) (the default with O(all_groups)) unchanged groups with nothing to report are counted in
      RV(unchanged_not_listed) instead. A delta run (O(delta_state_path)) lists only the groups it examined.
    - With O(member_details=sample) each member list keeps O(member_sample_size) entries, with C(<list>_count) beside it
      (C(members_added_count), C(members_removed_count), C(unresolved_members_count), C(skipped_members_count)) and, for
      skipped and unresolved members, C(skipped_members_by_reason) and C(unresolved_members_by_reason).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Entra object id.
      type: str
      sample: 6f1c3a55-0d2b-4c8e-9a5e-2d7f1b9c0a11
    display_name:
      description: Entra display name.
      type: str
      sample: Finance Team
    dn:
      description: Distinguished name of the AD group after the run.
      type: str
      sample: CN=Finance Team_2d7f1b9c0a11,OU=Cloud Groups,DC=corp,DC=example,DC=com
    action:
      description:
        - What happened to the group (in check mode, what would happen).
        - V(created), V(updated) (attributes or members changed), V(renamed), V(moved) (renamed and moved counts as moved),
          V(deleted), V(unchanged), V(skipped) (not written, see RV(groups[].reason)), V(orphaned) (a managed group whose
          Entra group is not in scope, left in place), V(error) (failed, see RV(groups[].reason_text); with reason
          C(not_applied) when the run stopped before the group's operations ran).
        - A group another run created a moment before this one (two runs at once) is reported V(unchanged) or V(updated),
          never V(created); RV(groups[].adopted_concurrent) says so.
      type: str
      choices: [created, updated, renamed, moved, deleted, unchanged, skipped, orphaned, error]
      sample: created
    changes:
      description:
        - "Each changed attribute with its old and new value, C({attribute: {before: old, after: new}}). C(cn) is the relative
          name, C(container) the parent DN (renames and moves). C(member) is C({added: n, removed: n}); the DNs are in
          RV(groups[].members_added) and RV(groups[].members_removed). For a created group, C(before) is null."
      type: dict
      sample: {description: {before: Budget owners, after: Budget and forecast owners}, member: {added: 2, removed: 0}}
    members_added:
      description: DNs added to the group.
      type: list
      elements: str
      sample: [CN=Alice,OU=Staff,DC=corp,DC=example,DC=com]
    members_removed:
      description: DNs removed from the group.
      type: list
      elements: str
      sample: []
    unresolved_members:
      description:
        - Entra members that could not be written, with the reason. For a group planned from its member changes
          (RV(groups[].member_scope) V(changes)), also a member removed in Entra whose AD account was not found
          (V(removed_member_not_found)).
      type: list
      elements: dict
      sample: [{id: 0d5b..., display_name: Bob, reason: not_found_in_forest}]
    skipped_members:
      description: Entra members that are never written (devices, cloud-only users, groups not written back...), with the reason.
      type: list
      elements: dict
      sample: [{id: 5c1e..., display_name: PC-1, reason: unsupported_type_device}]
    reason:
      description: Why a group was skipped or failed.
      type: str
      sample: mail_enabled
    reason_text:
      description: The reason in words, with the server's error for a group that failed.
      type: str
      sample: The group is mail-enabled; only cloud security groups that are not mail-enabled are written back.
    previous_dn:
      description: Distinguished name before a rename or move.
      type: str
      sample: CN=Finance_2d7f1b9c0a11,OU=Cloud Groups,DC=corp,DC=example,DC=com
    object_guid:
      description: objectGUID of the AD group (none for a group still to be created).
      type: str
      sample: 0b4c53d7-3f5c-4a0e-9a55-5f8f0c1d2e3f
    adopted_concurrent:
      description: The group was created by another run a moment before this one; this run adopted it (found by its anchor).
      type: bool
      returned: for such groups
      sample: true
    notes:
      description: What the run met while writing the group, in words (for example a group another run had just created).
      type: list
      elements: str
      returned: when there is something to say
      sample: [created by a concurrent run a moment ago - adopted (found by its anchor); nothing to change]
    adopted:
      description: Whether an existing AD group was taken over in this run (see RV(groups[].adopted_from)).
      type: bool
      sample: false
    adopted_from:
      description:
        - What was taken over, when RV(groups[].adopted) is true. V(writeback_v2) (a Connect Sync Group Writeback v2 group)
          or V(source_of_authority) (the original AD group of a group whose source of authority moved to the cloud).
      type: str
      returned: when adopted
      sample: source_of_authority
    nested_only:
      description: The group is written only because a selected group contains it; its members are not managed.
      type: bool
      returned: for such groups
      sample: true
    member_scope:
      description:
        - V(changes) when the group's members were planned from its member changes in Entra since the last run (in an incremental
          run, for a group whose AD copy nobody else changed since then). Its AD members were not read; RV(groups[].members_added)
          and RV(groups[].members_removed) are those changes (an add of a present member or a remove of an absent one is a no-op),
          and its skipped and unresolved members are those of the added ones.
      type: str
      returned: for such groups
      sample: changes
    entra:
      description:
        - For a managed AD group whose Entra group is not in scope, what Graph says of the Entra group. V(deleted) (its copy is
          deleted with O(prune)), V(exists) (out of scope, see O(out_of_scope)) or V(unknown) (not asked, with O(entra_groups)).
      type: str
      returned: for such groups
      sample: deleted
not_found:
  description: Selected ids or display names that match no Entra group.
  returned: always
  type: list
  elements: str
  sample: [Old Team]
ambiguous:
  description: Selected display names that match several Entra groups; none of those groups is written.
  returned: always
  type: list
  elements: dict
  sample: [{name: Sales, ids: [0d5b..., 7a21...]}]
cycles:
  description: Nested groups that form a cycle, each as a list of group ids.
  returned: always
  type: list
  elements: list
  sample: []
plan:
  description:
    - The LDAP operations, in the order they run (or would run, in check mode).
    - With O(member_details=sample) (the default) an operation's member lists (C(members), C(add), C(remove)) are given as
      counts (C(members_count), C(add_count), C(remove_count)); the DNs are in the group's entry of RV(groups)
      (C(members_added), C(members_removed)). With O(member_details=full) the lists are returned.
    - After a real run each has an C(outcome) (V(created), V(done), V(adopted_concurrent), V(already_gone), V(error),
      V(skipped_after_error), or V(not_run) when the run stopped first).
  returned: always
  type: list
  elements: dict
  sample:
    - op: create
      group_id: 6f1c3a55-0d2b-4c8e-9a5e-2d7f1b9c0a11
      dn: CN=Finance Team_2d7f1b9c0a11,OU=Cloud Groups,DC=corp,DC=example,DC=com
ldap_operations:
  description: LDAP requests this run sent, by kind.
  returned: always
  type: dict
  sample: {searches: 12, adds: 2, modifies: 1, modify_dns: 0, deletes: 0}
graph_requests:
  description: HTTP requests sent to Microsoft Graph (0 with O(entra_groups)).
  returned: always
  type: int
  sample: 4
member_source:
  description:
    - Where the members were read, C(beta) (with C(onPremisesObjectIdentifier), the AD objectGUID) or C(v1.0) (chosen
      automatically when beta refuses the read; members are then matched by C(onPremisesSecurityIdentifier), the objectSid,
      or the immutable id). Null when Graph was not read or no member was read.
  returned: always
  type: str
  sample: beta
written_early:
  description:
    - A first run in all mode (no saved state, no managed group under O(search_base), not in check mode) writes each group
      as soon as its members are read and resolved and its child groups are planned, while Graph is still read. C(groups)
      is how many groups were written that way, in C(waves) batches; the rest were planned with the whole read. C(stopped)
      says why early writing stopped before the read ended (V(memberships_max) once 150,000 member links were written
      early, which bounds the memory it holds), or null. Null when the run did not write early, which includes a tenant
      listing more than 5,000 groups (above that the memory writing early holds was measured over the module's bound).
  returned: always
  type: dict
  sample: {groups: 1690, waves: 24, stopped: null}
incremental:
  description:
    - With O(delta_state_path) and O(all_groups), what the run read. C(entra) is V(delta) or V(full) (C(entra_reason) says why a
      full read). C(ad) is V(usn) when only the groups changed in AD since the last run were read (the uSNChanged mark of the
      same DC, saved in the state file) or V(full), with C(ad_reason) (V(no_ad_state), V(dc_changed), V(dc_restored),
      V(search_base_changed), V(options_changed) (options that decide what is written, such as O(target_ou), O(naming) or
      O(membership), differ from the last run's), V(usn_went_back), V(users_changed), V(interval), V(entra_full_read), ...).
    - C(examined_groups) are the groups planned this run (changed on either side, and the groups nested in them);
      RV(groups) lists only those, and RV(summary) counts the others as unchanged (or skipped when ineligible).
  returned: with delta_state_path and all_groups
  type: dict
  sample: {entra: delta, entra_reason: null, ad: usn, ad_reason: null, examined_groups: 0, in_scope_groups: 1724}
member_reasons:
  description:
    - Skipped and unresolved members of the whole run, counted by reason.
  returned: always
  type: dict
  sample: {skipped: {cloud_only_user: 78000, unsupported_type_device: 120}, unresolved: {not_found: 2}}
unchanged_not_listed:
  description:
    - Unchanged groups with nothing to report that RV(groups) does not list (O(unchanged_groups=findings)); 0 with
      O(unchanged_groups=all). They are counted in RV(summary) too.
  returned: always
  type: int
  sample: 1830
diff:
  description:
    - In diff mode, one entry per group that changes, C(before_header)/C(after_header) its DN before and after.
  returned: in diff mode
  type: list
  elements: dict
  sample: [{before_header: "CN=Finance_2d7f1b9c0a11,OU=Cloud Groups,DC=corp,DC=example,DC=com",
            after_header: "CN=Finance Team_2d7f1b9c0a11,OU=Cloud Groups,DC=corp,DC=example,DC=com",
            before: {displayName: Finance}, after: {displayName: Finance Team}}]
changed:
  description:
    - Whether the run wrote to AD (in check mode, whether it would). A run that fails after writing reports V(true), with
      RV(summary), RV(groups) and RV(plan) of what was done.
  returned: always
  type: bool
  sample: true
domain_controller:
  description: The domain controller the run used.
  returned: always
  type: str
  sample: ldaps://dc1.corp.example.com:636
'''

import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import LDAP3_IMPORT_ERROR
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.argspec import ArgumentSpec, count_problem, entra_groups_problem
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.interpreter import quick_thread_switches
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.process_memory import rebuilt_in_fresh_memory
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback import WRITE_CONNECTIONS, ansible_diff, run_writeback


def argument_spec():
    spec = ArgumentSpec(
        argument_spec=dict(
            groups=dict(type='list', elements='str'),
            all_groups=dict(type='bool', default=False),
            group_filter=dict(type='str'),
            writeback_enabled_only=dict(type='bool', default=False),
            entra_groups=dict(type='list', elements='dict'),
            target_ou=dict(type='str'),
            ou_map=dict(type='list', elements='dict', default=[]),
            naming=dict(type='str', default='cloud_sync', choices=['cloud_sync', 'writeback_v2']),
            sam_account_name_template=dict(type='str'),
            membership=dict(type='str', default='authoritative', choices=['authoritative', 'additive']),
            member_match=dict(type='str', default='auto', choices=['auto', 'object_identifier', 'sid', 'immutable_id']),
            max_members=dict(type='int', default=50000),
            prune=dict(type='bool', default=True),
            out_of_scope=dict(type='str', default='keep', choices=['keep', 'delete']),
            soa_move=dict(type='bool', default=False),
            prune_empty_scope=dict(type='bool', default=False),
            deletion_threshold=dict(type='int', default=500),
            allow_admin_count=dict(type='bool', default=False),
            adopt_writeback_v2=dict(type='bool', default=False),
            adopt_rename=dict(type='bool', default=False),
            search_base=dict(type='str'),
            delta_state_path=dict(type='path'),
            fail_on_not_found=dict(type='bool', default=False),
            member_details=dict(type='str', default='sample', choices=['sample', 'full']),
            member_sample_size=dict(type='int', default=20),
            unchanged_groups=dict(type='str', choices=['all', 'findings']),
            ad_write_connections=dict(type='int', default=WRITE_CONNECTIONS),
            report_path=dict(type='path'),
        ),
        mutually_exclusive=[['groups', 'all_groups', 'entra_groups'], ['entra_groups', 'delta_state_path']],
        required_one_of=[['groups', 'all_groups', 'entra_groups']],
    )
    return spec.with_ad_connection().with_graph_auth().with_value_checks(
        entra_groups=entra_groups_problem, ad_write_connections=count_problem(1, 8))


def run_or_failure(module):
    """``{'result': ...}``, or ``{'failure': fail_json's arguments}`` for a CloudSyncError: returned,
    not raised, so the run's frames (which a traceback keeps) are gone before the result is rebuilt."""
    try:
        return dict(result=run_writeback(module.params, check_mode=module.check_mode, diff_mode=module._diff))
    except CloudSyncError as err:
        return dict(failure=err.to_fail_kwargs())


def main():
    module = argument_spec().create_module()
    quick_thread_switches()   # a thread whose LDAP reply has come waits less for the interpreter
    if LDAP3_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib('ldap3'), exception=LDAP3_IMPORT_ERROR)
    if module.params['all_groups'] is False and not module.params['groups'] and module.params['entra_groups'] is None:
        module.fail_json(msg='Nothing to write back: give groups, all_groups=true or entra_groups')
    try:
        # The result, or a failure's, is rebuilt in memory of its own and the run's is given back
        # before exit_json or fail_json adds its JSON (see process_memory).
        outcome = rebuilt_in_fresh_memory(lambda: run_or_failure(module))
    except Exception as err:  # pylint: disable=broad-except
        # Never a bare traceback for the user; keep it for -vvv.
        module.fail_json(msg='ad_group_writeback failed unexpectedly: %s: %s' % (type(err).__name__, err),
                         exception=traceback.format_exc())
    if 'failure' in outcome:
        module.fail_json(**outcome['failure'])
    result = outcome['result']
    # Through module.warn: Ansible shows them and returns them as `warnings` (passing a `warnings`
    # key to exit_json is deprecated).
    for warning in result.pop('warnings', []):
        module.warn(warning)
    if 'diff' in result:
        result['diff'] = ansible_diff(result['diff'], result['groups'])
    errors = [g for g in result['groups'] if g.get('action') == 'error']
    if errors:
        result['msg'] = 'Writeback failed for %d group(s): %s' % (
            len(errors), '; '.join('%s (%s): %s' % (g.get('display_name'), g.get('id'), g.get('reason_text')) for g in errors[:5]))
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
