"""Interop proof: Microsoft's own Graph SDK (msgraph-sdk + azure-identity) reads the emulator.

If the SDK cannot read what the emulator serves (tokens, collections, @odata.nextLink paging,
errors), the emulator is wrong, not the SDK. TLS validation is on: both the token credential
and the SDK's httpx client trust only the lab CA.

How the SDK is pointed at the emulator: see tests/emulator/sdk.py (``sdk_client``).
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import asyncio

import pytest

from emulator.fixtures import build_tenant  # the graph_emulator_factory fixture comes from tests/conftest.py
from emulator.sdk import sdk_client

msgraph = pytest.importorskip("msgraph")

from kiota_abstractions.base_request_configuration import RequestConfiguration  # noqa: E402
from msgraph.generated.groups.delta.delta_request_builder import DeltaRequestBuilder  # noqa: E402
from msgraph.generated.groups.groups_request_builder import GroupsRequestBuilder  # noqa: E402
from msgraph.generated.groups.item.members.members_request_builder import MembersRequestBuilder  # noqa: E402
from msgraph.generated.models.o_data_errors.o_data_error import ODataError  # noqa: E402
from msgraph.generated.models.user import User  # noqa: E402
from msgraph_core.tasks.page_iterator import PageIterator  # noqa: E402

BIG = 3000


async def _read(emu, big_id):
    client, close = sdk_client(emu, emu.client_id, emu.client_secret)
    try:
        # groups, first page of 5 then every page through the SDK's PageIterator
        cfg = RequestConfiguration(query_parameters=GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(
            select=["id", "displayName", "securityEnabled"], top=5))
        first = await client.groups.get(request_configuration=cfg)
        groups = []

        def keep_group(g):
            groups.append(g)
            return True
        await PageIterator(first, client.request_adapter).iterate(keep_group)

        # all members of the big group, 999 a page, selected properties
        mcfg = RequestConfiguration(query_parameters=MembersRequestBuilder.MembersRequestBuilderGetQueryParameters(
            select=["id", "displayName", "userPrincipalName"], top=999))
        page = await client.groups.by_group_id(big_id).members.get(request_configuration=mcfg)
        members = []
        pages = 0
        while True:
            pages += 1
            members.extend(page.value)
            if not page.odata_next_link:
                break
            page = await client.groups.by_group_id(big_id).members.with_url(page.odata_next_link).get()

        # a delta round through the SDK's /groups/delta() builder, nextLinks followed with with_url
        dcfg = RequestConfiguration(query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
            select=["displayName", "securityEnabled", "members"]))
        page = await client.groups.delta.get(request_configuration=dcfg)
        delta_members = {}
        delta_pages = 0
        while True:
            delta_pages += 1
            for g in page.value:
                delta_members.setdefault(g.id, set()).update(
                    # kiota's JSON parse node turns GUID strings into uuid.UUID
                    str(m["id"]) for m in (g.additional_data.get("members@delta") or []) if "@removed" not in m)
            if page.odata_delta_link:
                break
            page = await client.groups.delta.with_url(page.odata_next_link).get()
        delta = (delta_members, delta_pages, page.odata_delta_link)

        # a Graph error surfaces as the SDK's ODataError with our code and request id
        err = None
        try:
            await client.groups.by_group_id("00000000-0000-4000-8000-000000000000").get()
        except ODataError as e:
            err = e
        return groups, members, pages, err, delta
    finally:
        await close()


def test_msgraph_sdk_lists_groups_and_pages_through_a_large_group(graph_emulator_factory):
    tenant = build_tenant(groups=12, users=BIG + 100, memberships=BIG + 500, big_group_members=BIG, seed=11)
    emu = graph_emulator_factory(tenant)
    big_id = tenant["groups"][0]["id"]
    groups, members, pages, err, delta = asyncio.run(_read(emu, big_id))
    assert sorted(g.id for g in groups) == sorted(emu.tenant.ids_of_type("group"))
    assert len(groups) == len(set(g.id for g in groups))
    assert all(g.display_name for g in groups)
    ids = [m.id for m in members]
    assert len(ids) == BIG and set(ids) == set(emu.admin.members_of(big_id))
    assert pages == 4
    assert all(isinstance(m, User) for m in members)  # @odata.type drives the SDK's model choice
    assert all(m.user_principal_name for m in members)
    assert err is not None and err.response_status_code == 404
    assert err.error.code == "Request_ResourceNotFound"
    delta_members, delta_pages, delta_link = delta
    assert set(delta_members) == set(emu.tenant.ids_of_type("group"))
    assert all(delta_members[g] == set(emu.admin.members_of(g)) for g in delta_members)
    assert delta_pages > 3 and delta_link.startswith(emu.graph_url + "/groups/delta?$deltatoken=")
    assert emu.admin.counters()["emulator_errors"] == 0
    graph_log = emu.admin.requests(kind="graph")
    assert all(e["app"] == emu.client_id for e in graph_log)
    assert all(e["path"].startswith("/v1.0/groups") for e in graph_log)
    assert emu.admin.counters()["by_kind"]["token"] == 1
