#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: entra_group_info
short_description: Read Entra ID groups and their members for writeback to Active Directory
version_added: 0.1.0
description:
  - Reads groups from Microsoft Graph, selected by id or display name, by an OData filter, or all cloud security groups,
    optionally with their direct or transitive members, and tells for each group whether Entra Cloud Sync would write it
    back to Active Directory (and why not), and for each member whether it can be written.
  - The result's RV(groups) can be given unchanged to the O(hybrid_identity.cloud_sync.ad_group_writeback#module:entra_groups)
    option of M(hybrid_identity.cloud_sync.ad_group_writeback) (read them with O(members=direct)).
  - Members are read from the Graph C(beta) endpoint, because C(onPremisesObjectIdentifier) (the user's AD objectGUID, the
    first way a member is found in AD) exists only there; groups are read from C(v1.0). When C(beta) refuses the read (the
    property missing, as in a cloud that lacks it, or C(beta) unavailable) members are read from C(v1.0) instead, where they
    carry C(onPremisesSecurityIdentifier) (the objectSid) and the immutable id; RV(member_source) says which was used.
  - Filters are sized to Graph's documented query limits (at most 15 expressions in a filter with C(in), C(eq) values of at
    most 120 characters without advanced query, a URL of at most 2,048 characters with it); display names longer than 120
    characters are looked up with advanced query (C(ConsistencyLevel=eventual)), so a group created moments ago may not be
    found by such a name yet.
  - Groups converted from AD to the cloud ("Group source of authority", C(onPremisesSyncBehavior/isCloudManaged), beta) are
    eligible and carry their on-premises identifiers, so the writeback can adopt the original AD group. Reading the flag
    needs the application permission C(Group-OnPremisesSyncBehavior.ReadWrite.All); without it such groups are reported
    ineligible (C(source_of_authority_on_premises)) with a warning.
  - Members of several groups are read through JSON C($batch) requests (20 groups per request, O(graph_parallelism) requests
    at once). Throttled requests are retried after the C(Retry-After) Graph asks for.
author:
  - hybrid_identity.cloud_sync contributors (@hybrid-identity)
extends_documentation_fragment:
  - hybrid_identity.cloud_sync.graph_auth
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode returns the same result.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
  platform:
    support: full
    platforms: posix
    description:
      - Runs on the controller or any host with the Python libraries; talks HTTPS to Microsoft Graph. Nothing is installed on any
        other host.
requirements:
  - msal >= 1.28.0
  - requests
notes:
  - "Application permissions needed: C(Group.Read.All) (or C(GroupMember.Read.All)) and C(User.Read.All), or
    C(Directory.Read.All). Without C(User.Read.All) Graph returns member users without their properties; the module then
    fails rather than taking synced users for cloud-only ones."
  - Whether a group has too many members (O(max_members)) is only evaluated when O(members=direct).
seealso:
  - module: hybrid_identity.cloud_sync.ad_group_writeback
    description: Takes this module's RV(groups) as its O(hybrid_identity.cloud_sync.ad_group_writeback#module:entra_groups).
  - name: List groups (Microsoft Graph v1.0)
    description: The Graph request this module pages through, with its C($filter) rules.
    link: https://learn.microsoft.com/graph/api/group-list
  - name: Provision groups to Active Directory using Microsoft Entra Cloud Sync
    description: Which groups Cloud Sync writes back.
    link: https://learn.microsoft.com/entra/identity/hybrid/cloud-sync/tutorial-group-provisioning
options:
  groups:
    description:
      - Groups to read, each an Entra object id (GUID) or an exact display name.
      - A display name matching several groups selects all of them; they are listed in RV(ambiguous).
      - Entries that match no group are returned in RV(not_found); the module does not fail for them.
    type: list
    elements: str
  group_filter:
    description:
      - An OData C($filter) expression on groups, passed to Microsoft Graph as given (in parentheses), for example
        C(startswith(displayName,'Sales')).
      - With O(all_groups=true) it is ANDed with C(securityEnabled eq true and mailEnabled eq false); alone it reads every
        group it matches. Ignored when only O(groups) is given.
      - Filters that need Graph's advanced query (C(ne), C(not), C(endswith)) are sent with C(ConsistencyLevel=eventual).
      - Quote string literals with single quotes and double any quote inside them (C(displayName eq 'O''Brien')).
      - A filter with unbalanced quotes or parentheses is refused, so it cannot close the parentheses it is put in and
        widen the selection. Eligibility is checked again on what Graph returns in any case.
    type: str
  all_groups:
    description:
      - Read all cloud security groups (C(securityEnabled) true, C(mailEnabled) false), narrowed by O(group_filter).
    type: bool
    default: false
  members:
    description:
      - V(none) reads no members, V(direct) the direct members (nested groups appear as members of type C(group)),
        V(transitive) the members of nested groups too (flattened).
    type: str
    default: none
    choices: [none, direct, transitive]
  eligible_only:
    description:
      - Return only the groups that would be written back; the others are listed in RV(skipped) with their reasons.
    type: bool
    default: false
  max_members:
    description:
      - A group with more direct members is not eligible (reason C(too_many_members)); Entra Cloud Sync's limit is 50,000.
    type: int
    default: 50000
  writeback_enabled_only:
    description:
      - Return only groups whose C(writebackConfiguration/isEnabled) (Graph C(beta)) is true, like a Cloud Sync scoping
        filter on that flag; the others are listed in RV(skipped) with reason C(writeback_not_enabled). Groups are then read
        from C(beta).
      - A O(group_filter) naming a C(beta)-only property (C(writebackConfiguration/isEnabled eq true)) is sent to C(beta) in
        any case.
    type: bool
    default: false
  include_nested:
    description:
      - With O(groups) and O(members=direct), also return the eligible cloud security groups that are direct members of a
        selected group and not selected themselves, with C(nested_only=true) and no members, as Entra Cloud Sync writes them
        back in selected mode ("only the nested group will be written back and not its members"; one level).
      - Set it when the result feeds O(hybrid_identity.cloud_sync.ad_group_writeback#module:entra_groups) for a selection.
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: Read two groups with their direct members
  hybrid_identity.cloud_sync.entra_group_info:
    tenant_id: "{{ entra_tenant_id }}"
    client_id: "{{ entra_client_id }}"
    client_certificate_path: /etc/cloudsync/writeback.pem
    groups:
      - Finance Team
      - 6f1c2b9a-5d6e-4f70-8a9b-0c1d2e3f4a5b
    members: direct
  register: entra

- name: Write them back
  hybrid_identity.cloud_sync.ad_group_writeback:
    domain_controllers: [dc1.corp.example.test]
    ad_user: svc-writeback@corp.example.test
    ad_password: "{{ writeback_password }}"
    entra_groups: "{{ entra.groups }}"

- name: Which cloud security groups starting with Sales would be written back (managed identity of the VM)
  hybrid_identity.cloud_sync.entra_group_info:
    auth_method: managed_identity
    all_groups: true
    group_filter: "startswith(displayName,'Sales')"
    eligible_only: true
  register: sales

- name: Show the skipped groups and why
  ansible.builtin.debug:
    var: sales.skipped
'''

RETURN = r'''
groups:
  description:
    - The groups read, in the order selected (all mode - the order Graph returns), as plain data.
    - With O(eligible_only=true) only the eligible groups.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Entra object id (lower case).
      type: str
      sample: 6f1c2b9a-5d6e-4f70-8a9b-0c1d2e3f4a5b
    display_name:
      description: Display name.
      type: str
      sample: Finance Team
    description:
      description: Description, or null.
      type: str
      sample: Finance department
    security_enabled:
      description: Whether it is a security group.
      type: bool
      sample: true
    mail_enabled:
      description: Whether it is mail-enabled.
      type: bool
      sample: false
    group_types:
      description: Graph's C(groupTypes) (C(Unified) for Microsoft 365, C(DynamicMembership) for dynamic groups).
      type: list
      elements: str
      sample: []
    membership_rule:
      description: Rule of a dynamic group, or null.
      type: str
      sample: null
    on_premises_sync_enabled:
      description: True when the group is synchronised from AD.
      type: bool
      sample: null
    cloud_managed:
      description:
        - True when the group came from AD and its source of authority was converted to the cloud
          (C(onPremisesSyncBehavior/isCloudManaged), beta); false otherwise or when unknown.
      type: bool
      sample: false
    on_premises_security_identifier:
      description: The objectSid of the AD group the group came from, or null.
      type: str
      sample: null
    on_premises_sam_account_name:
      description: The sAMAccountName of the AD group the group came from, or null.
      type: str
      sample: null
    on_premises_domain_name:
      description: The DNS name of the AD domain the group came from, or null.
      type: str
      sample: null
    writeback_enabled:
      description: C(writebackConfiguration/isEnabled) when read (from beta, see O(writeback_enabled_only)), else null.
      type: bool
      sample: null
    nested_only:
      description: Present (true) on a nested group returned by O(include_nested), written back without its members.
      type: bool
      returned: with O(include_nested)
      sample: true
    eligible:
      description: Whether Entra Cloud Sync would write the group back.
      type: bool
      sample: true
    ineligible_reasons:
      description:
        - Why not (C(not_security_enabled), C(mail_enabled), C(microsoft_365), C(synced_from_ad),
          C(source_of_authority_on_premises), C(too_many_members)).
      type: list
      elements: str
      sample: []
    member_count:
      description: Number of direct members (a nested group counts as one).
      type: int
      returned: when O(members=direct)
      sample: 12
    members:
      description: The members.
      type: list
      elements: dict
      returned: when O(members) is not V(none)
      sample:
        - id: 0d5b6a52-3f7e-4a4c-9a57-7f0b8f2b5c11
          type: user
          display_name: Alice Example
          user_principal_name: alice@corp.example.test
          on_premises_object_identifier: 3e1f0a3c-7c1b-4d0e-9b0a-1f2e3d4c5b6a
          on_premises_security_identifier: S-1-5-21-1004336348-1177238915-682003330-1105
          on_premises_immutable_id: PAofPhsNDU2bCh8uPUxbag==
          on_premises_domain_name: corp.example.test
          on_premises_sync_enabled: true
          supported: true
          reason: null
        - id: 9c3d2e1f-0a1b-4c2d-8e3f-4a5b6c7d8e9f
          type: device
          display_name: PC-0042
          user_principal_name: null
          on_premises_object_identifier: null
          on_premises_security_identifier: null
          on_premises_immutable_id: null
          on_premises_domain_name: null
          on_premises_sync_enabled: null
          supported: false
          reason: unsupported_type_device
not_found:
  description: Entries of O(groups) that match no group.
  returned: always
  type: list
  elements: str
  sample: [Old Team]
skipped:
  description: Groups left out by O(eligible_only), with the reasons.
  returned: always
  type: list
  elements: dict
  sample: [{id: 46191aa0-6f57-4d36-8c22-b1f4bbb91047, display_name: All Sales, reasons: [microsoft_365]}]
ambiguous:
  description: Display names of O(groups) that matched more than one group, with the ids of all of them.
  returned: always
  type: list
  elements: dict
  sample: [{name: Finance, ids: [0b1c..., 7e2f...]}]
member_source:
  description: Where members were read, C(beta) or C(v1.0) (when beta refused); null when no member was read.
  returned: always
  type: str
  sample: beta
graph_requests:
  description: HTTP requests sent to Microsoft Graph (a C($batch) request counts as one).
  returned: always
  type: int
  sample: 3
graph_stats:
  description: Request counters of the Graph client (requests, retries, throttled, batches, sub_requests, pages).
  returned: always
  type: dict
  sample: {requests: 3, retries: 0, throttled: 0, batches: 1, sub_requests: 12, pages: 13, token_refreshes: 0}
'''

import traceback

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.argspec import ArgumentSpec
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError

try:
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.graph_auth import missing_library
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.graph_client import GraphClient
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import entra_reader
    IMPORT_ERROR = None
except ImportError:
    IMPORT_ERROR = traceback.format_exc()


def main():
    module = ArgumentSpec(argument_spec=dict(
        groups=dict(type='list', elements='str'),
        group_filter=dict(type='str'),
        all_groups=dict(type='bool', default=False),
        members=dict(type='str', default='none', choices=['none', 'direct', 'transitive']),
        eligible_only=dict(type='bool', default=False),
        max_members=dict(type='int', default=50000),
        writeback_enabled_only=dict(type='bool', default=False),
        include_nested=dict(type='bool', default=False),
    )).with_graph_auth().create_module(supports_check_mode=True)
    params = module.params
    if IMPORT_ERROR is not None:
        module.fail_json(msg='The Graph module utilities cannot be imported', exception=IMPORT_ERROR)
    library, exc = missing_library()
    if library:
        module.fail_json(msg=missing_required_lib(library), exception=exc)
    if not (params['groups'] or params['group_filter'] or params['all_groups']):
        module.fail_json(msg='Nothing to read: give groups, group_filter or all_groups=true')
    ids, names = entra_reader.split_selection(params['groups'])
    client = None
    try:
        client = GraphClient(params, warn=module.warn)
        report = entra_reader.read_groups_report(
            client, ids=ids or None, display_names=names or None, odata_filter=params['group_filter'],
            all_groups=params['all_groups'], members=params['members'], eligible_only=params['eligible_only'],
            max_members=params['max_members'], include_nested=params['include_nested'],
            writeback_enabled_only=params['writeback_enabled_only'])
    except CloudSyncError as err:
        fail = err.to_fail_kwargs()
        fail.setdefault('graph_requests', client.stats.get('requests', 0) if client is not None else 0)
        module.fail_json(**fail)
    finally:
        if client is not None:
            client.close()
    stats = dict(client.stats)
    stats.pop('retry_wait', None)
    for warning in report.pop('warnings', None) or []:
        module.warn(warning)
    module.exit_json(changed=False, graph_requests=stats['requests'], graph_stats=stats, **report)


if __name__ == '__main__':
    main()
