# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    """Options shared by every module that reads Microsoft Graph."""

    DOCUMENTATION = r'''
options:
  tenant_id:
    description:
      - Directory (tenant) ID of the Entra tenant.
      - Falls back to E(AZURE_TENANT_ID), then to E(AZURE_TENANT) (the name AWX's Microsoft Azure Resource Manager
        credential injects, and azure.azcollection reads); when both are set E(AZURE_TENANT_ID) wins.
    type: str
    aliases: [tenant]
  client_id:
    description:
      - Application (client) ID of the app registration the module authenticates as.
      - Falls back to E(AZURE_CLIENT_ID).
    type: str
  client_secret:
    description:
      - Client secret of the application.
      - Falls back to E(AZURE_CLIENT_SECRET), then to E(AZURE_SECRET) (AWX's Azure credential, azure.azcollection);
        when both are set E(AZURE_CLIENT_SECRET) wins.
    type: str
    aliases: [secret]
  client_certificate_path:
    description:
      - PEM file holding the application's certificate and its private key.
      - The certificate thumbprint is computed from it.
      - Falls back to E(AZURE_CLIENT_CERTIFICATE_PATH).
    type: path
  client_certificate_password:
    description:
      - Password of the private key in O(client_certificate_path), when it is encrypted.
      - Falls back to E(AZURE_CLIENT_CERTIFICATE_PASSWORD).
    type: str
  auth_method:
    description:
      - How to obtain a token for Microsoft Graph.
      - V(auto) uses a certificate when O(client_certificate_path) is set, else a client secret when
        O(client_secret) is set, else a managed identity when O(managed_identity_client_id) is set or the environment
        names a managed identity endpoint (E(IDENTITY_ENDPOINT) with E(IDENTITY_HEADER) or E(IMDS_ENDPOINT), or
        E(MSI_ENDPOINT) with E(MSI_SECRET); that is App Service and Functions, Service Fabric, Azure Machine Learning, Azure Arc).
        Otherwise the module fails with a message naming these options and their environment variables; it never asks
        the instance metadata service for a token unless told to.
      - V(managed_identity) uses the managed identity of the Azure VM or App Service the module runs on;
        user-assigned when O(managed_identity_client_id) is set, system-assigned otherwise. On an Azure VM this must be
        set explicitly.
      - A user name and password (E(AZURE_AD_USER) and E(AZURE_PASSWORD), what AWX injects for an Azure credential
        without a client and tenant) are not supported.
    type: str
    default: auto
    choices: [auto, client_secret, certificate, managed_identity]
  managed_identity_client_id:
    description:
      - Client ID of a user-assigned managed identity.
      - Falls back to E(CLOUDSYNC_MANAGED_IDENTITY_CLIENT_ID).
    type: str
  cloud:
    description:
      - National cloud of the tenant; selects the login and Graph endpoints.
      - V(public) is C(login.microsoftonline.com) / C(graph.microsoft.com); V(usgov) is
        C(login.microsoftonline.us) / C(graph.microsoft.us); V(usgov_dod) is C(login.microsoftonline.us) /
        C(dod-graph.microsoft.us); V(china) is C(login.partner.microsoftonline.cn) / C(microsoftgraph.chinacloudapi.cn).
      - The cloud names of azure.azcollection and AWX are accepted too, V(AzureCloud) (V(public)), V(AzureUSGovernment)
        (V(usgov); a US Government L5 (DoD) tenant sets V(usgov_dod)) and V(AzureChinaCloud) (V(china)).
      - Falls back to E(CLOUDSYNC_AZURE_CLOUD), then to E(AZURE_CLOUD_ENVIRONMENT).
    type: str
    default: public
    choices: [public, usgov, usgov_dod, china, AzureCloud, AzureUSGovernment, AzureChinaCloud]
    aliases: [cloud_environment]
  authority_host:
    description:
      - Overrides the login endpoint of O(cloud), as an C(https://) URL.
      - Falls back to E(AZURE_AUTHORITY_HOST).
    type: str
  graph_endpoint:
    description:
      - Overrides the Microsoft Graph endpoint of O(cloud), as an C(https://) URL without version.
      - Falls back to E(CLOUDSYNC_GRAPH_ENDPOINT).
    type: str
  graph_ca_bundle:
    description:
      - PEM file of certificate authorities to trust for the login and Graph endpoints
        (for a TLS-inspecting proxy), instead of the default trust store.
      - Falls back to E(CLOUDSYNC_GRAPH_CA_BUNDLE).
    type: path
  graph_validate_certs:
    description:
      - Validate TLS certificates of the login and Graph endpoints.
    type: bool
    default: true
  graph_timeout:
    description:
      - Seconds to wait for one HTTP response.
    type: int
    default: 60
  graph_max_retries:
    description:
      - At most how many times a throttled (429), unavailable (503, 504) or unanswered request is retried.
      - By default the count is not limited; O(graph_retry_budget) bounds the retries by time.
    type: int
  graph_retry_budget:
    description:
      - Seconds one Graph request may spend being retried, counted from its first attempt, while Graph throttles it
        (429), is unavailable (503, 504) or does not answer. An outage shorter than this is ridden out.
      - Each C(Retry-After) Graph sends is waited in full; one longer than what is left of the budget fails the request at
        once. Without C(Retry-After) the wait grows exponentially (with jitter), the last one shortened to fit the budget.
      - A request that fails after retries says how many attempts were made, over how long, and how long it waited.
      - Falls back to E(CLOUDSYNC_GRAPH_RETRY_BUDGET).
    type: int
    default: 300
    aliases: [graph_max_retry_wait]
  graph_parallelism:
    description:
      - How many Graph requests (or C($batch) requests) run at once.
    type: int
    default: 4
'''
