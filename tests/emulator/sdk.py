"""Microsoft's Graph SDK (msgraph-sdk + azure-identity) pointed at the emulator, TLS validated.

    client, close = sdk_client(emu)               # emu: an Emulator, or the standalone info dict
    groups = await client.groups.get()
    await close()

How (read from msgraph/graph_request_adapter.py, msgraph_core/graph_client_factory.py,
kiota_http/httpx_request_adapter.py, kiota_authentication_azure):
* the request adapter takes its base URL from ``httpx.AsyncClient.base_url``; httpx stores it
  with a trailing slash, so the SDK would request ``/v1.0//groups``: the adapter's ``base_url``
  is set explicitly;
* ``GraphClientFactory.create_with_default_middleware(client=...)`` adds the SDK's middleware
  (retry of 429/503/504 honouring Retry-After, redirect, telemetry) to our httpx client, whose
  ``verify`` is an SSLContext trusting only the lab CA;
* the azure-identity credential gets ``authority=<emulator login host>``,
  ``disable_instance_discovery=True`` (no call to login.microsoftonline.com) and
  ``connection_verify=<lab CA file>``;
* scopes are explicit (``https://graph.microsoft.com/.default``); kiota would otherwise derive
  ``https://<graph host>/.default`` from the request URL; ``allowed_hosts`` names the emulator host.
* kiota's JSON parse node turns GUID strings in untyped data (``additional_data``, e.g.
  ``members@delta``) into ``uuid.UUID``.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ssl
from urllib.parse import urlsplit


def _get(emu, name):
    return emu[name] if isinstance(emu, dict) else getattr(emu, name)


def sdk_client(emu, client_id=None, client_secret=None, tenant_id=None, max_connections=None):
    """(GraphServiceClient, async close()) for an Emulator or a standalone ``info`` dict.

    Credentials default to the emulator's standard app (fixtures.CLIENT_ID / CLIENT_SECRET)."""
    import httpx
    from azure.identity.aio import ClientSecretCredential
    from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph_core import GraphClientFactory
    from emulator.fixtures import CLIENT_ID, CLIENT_SECRET

    ca_file = _get(emu, "ca_file")
    graph_url = _get(emu, "graph_url")
    credential = ClientSecretCredential(tenant_id or _get(emu, "tenant_id"), client_id or CLIENT_ID,
                                        client_secret or CLIENT_SECRET, authority=_get(emu, "authority_url"),
                                        disable_instance_discovery=True, connection_verify=ca_file)
    auth = AzureIdentityAuthenticationProvider(credential, scopes=["https://graph.microsoft.com/.default"],
                                               allowed_hosts=[urlsplit(graph_url).hostname])
    limits = httpx.Limits(max_connections=max_connections) if max_connections else httpx.Limits()
    http = httpx.AsyncClient(base_url=graph_url, verify=ssl.create_default_context(cafile=ca_file), timeout=60,
                             limits=limits)
    http = GraphClientFactory.create_with_default_middleware(client=http)
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = graph_url
    client = GraphServiceClient(request_adapter=adapter)

    async def close():
        await credential.close()
        await http.aclose()
    return client, close
