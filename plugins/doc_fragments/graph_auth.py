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
      - Falls back to E(AZURE_TENANT_ID).
    type: str
  client_id:
    description:
      - Application (client) ID of the app registration the module authenticates as.
      - Falls back to E(AZURE_CLIENT_ID).
    type: str
  client_secret:
    description:
      - Client secret of the application.
      - Falls back to E(AZURE_CLIENT_SECRET).
    type: str
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
        O(client_secret) is set, else a managed identity.
      - V(managed_identity) uses the managed identity of the Azure VM or App Service the module runs on;
        user-assigned when O(managed_identity_client_id) is set, system-assigned otherwise.
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
      - Falls back to E(CLOUDSYNC_AZURE_CLOUD).
    type: str
    default: public
    choices: [public, usgov, usgov_dod, china]
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
      - How many times a throttled (429) or unavailable (503, 504) request is retried.
    type: int
    default: 5
  graph_max_retry_wait:
    description:
      - Upper bound, in seconds, of the total time spent waiting between retries of one request.
      - A C(Retry-After) longer than what is left of it fails the request instead of waiting.
    type: int
    default: 120
  graph_parallelism:
    description:
      - How many Graph requests (or C($batch) requests) run at once.
    type: int
    default: 4
'''
