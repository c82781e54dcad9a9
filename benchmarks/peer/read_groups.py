#!/usr/bin/env python
"""The peer's read half: what an administrator writes today without this collection.

Reads the cloud security groups and their members with Microsoft's Graph SDK for Python
(msgraph-sdk, async, 4 member reads in flight, like the module's default parallelism), keeps the
groups Cloud Sync would write back (security, not mail-enabled, not dynamic, not synced from AD),
and writes them as Ansible variables for ``playbook.yml``: each group's DN (``<name>_<last 12 of
id>`` in ``--ou``), attributes, and member DNs. Synced users are taken at their
``onPremisesDistinguishedName`` (no AD lookup: generous to the peer); nested groups at the DN this
script gives them; other members are dropped.

    read_groups.py --emulator-info .build/bench/small/emulator.json --ou OU=BenchPeer,DC=... --out vars.json
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import asyncio
import json
import os
import sys

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.groups.groups_request_builder import GroupsRequestBuilder
from msgraph.generated.groups.item.members.members_request_builder import MembersRequestBuilder
from msgraph.generated.models.group import Group
from msgraph.generated.models.user import User

from emulator.sdk import sdk_client


def escape_rdn(value):
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;=' or (i == 0 and ch in ' #') or (i == len(value) - 1 and ch == ' '):
            out.append('\\' + ch)
        else:
            out.append(ch)
    return ''.join(out)


def group_dn(group, ou):
    return 'CN=%s_%s,%s' % (escape_rdn((group.display_name or '')[:51]), group.id.replace('-', '')[-12:], ou)


async def read(info, ou):
    client, close = sdk_client(info, os.environ['BENCH_CLIENT_ID'], os.environ['BENCH_CLIENT_SECRET'],
                               os.environ['BENCH_TENANT_ID'])
    try:
        cfg = RequestConfiguration(query_parameters=GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(
            select=['id', 'displayName', 'description', 'securityEnabled', 'mailEnabled', 'groupTypes',
                    'onPremisesSyncEnabled'], top=999))
        page = await client.groups.get(request_configuration=cfg)
        groups = []
        while True:
            groups.extend(page.value)
            if not page.odata_next_link:
                break
            page = await client.groups.with_url(page.odata_next_link).get()
        wanted = [g for g in groups if g.security_enabled and not g.mail_enabled and not (g.group_types or [])
                  and not g.on_premises_sync_enabled]
        dns = dict((g.id, group_dn(g, ou)) for g in wanted)
        gate = asyncio.Semaphore(4)
        mcfg = RequestConfiguration(query_parameters=MembersRequestBuilder.MembersRequestBuilderGetQueryParameters(
            select=['id', 'onPremisesDistinguishedName', 'onPremisesSyncEnabled'], top=999))

        async def members(g):
            async with gate:
                out = []
                page = await client.groups.by_group_id(g.id).members.get(request_configuration=mcfg)
                while True:
                    for m in page.value:
                        if isinstance(m, User) and m.on_premises_sync_enabled and m.on_premises_distinguished_name:
                            out.append(m.on_premises_distinguished_name)
                        elif isinstance(m, Group) and m.id in dns:
                            out.append(dns[m.id])
                    if not page.odata_next_link:
                        return out
                    page = await client.groups.by_group_id(g.id).members.with_url(page.odata_next_link).get()
        member_lists = await asyncio.gather(*[members(g) for g in wanted])
    finally:
        await close()
    out = []
    for g, mem in zip(wanted, member_lists):
        attributes = {'displayName': g.display_name, 'groupType': '-2147483646',
                      'msDS-ExternalDirectoryObjectId': 'Group_' + g.id}
        if g.description:
            attributes['description'] = g.description
        out.append({'dn': dns[g.id], 'attributes': attributes, 'members': mem})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--emulator-info', required=True)
    ap.add_argument('--ou', required=True)
    ap.add_argument('--out', required=True)
    args = ap.parse_args(argv)
    with open(args.emulator_info) as fh:
        info = json.load(fh)
    groups = asyncio.run(read(info, args.ou))
    with open(args.out, 'w') as fh:
        json.dump({'peer_groups': groups}, fh)
    print('peer read: %d groups, %d member values' % (len(groups), sum(len(g['members']) for g in groups)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
