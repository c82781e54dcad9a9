# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    """Options shared by every module that connects to Active Directory over LDAP."""

    DOCUMENTATION = r'''
options:
  domain_controllers:
    description:
      - Domain controllers to connect to, tried in order; the first that answers is used for the whole run.
      - Each entry is a host name or IP, optionally with C(:port), or an C(ldap://) / C(ldaps://) URL.
      - Falls back to the comma-separated environment variable E(CLOUDSYNC_AD_SERVERS).
    type: list
    elements: str
    aliases: [domain_controller, server]
  ad_tls_mode:
    description:
      - How the LDAP connection is protected.
      - V(ldaps) is LDAP over TLS (port 636, Global Catalog 3269).
      - V(starttls) upgrades a plain connection (port 389, Global Catalog 3268) before binding.
      - V(none) sends everything in clear text; it is refused unless O(ad_allow_plaintext=true),
        and a simple bind is never sent in clear text.
      - Falls back to E(CLOUDSYNC_AD_TLS_MODE).
    type: str
    default: ldaps
    choices: [ldaps, starttls, none]
  ad_allow_plaintext:
    description:
      - Allow O(ad_tls_mode=none). Only Kerberos binds are possible then (they protect the credentials).
    type: bool
    default: false
  ad_ca_file:
    description:
      - PEM file of the certificate authorities that issued the domain controllers' certificates.
      - Without it the system trust store is used.
      - Falls back to E(CLOUDSYNC_AD_CA_FILE).
    type: path
  ad_validate_certs:
    description:
      - Validate the domain controllers' TLS certificates (chain and host name).
      - Turning this off exposes the bind credentials to anyone who can intercept the connection.
      - Falls back to E(CLOUDSYNC_AD_VALIDATE_CERTS).
    type: bool
    default: true
  ad_auth:
    description:
      - How to authenticate the LDAP bind.
      - V(simple) sends O(ad_user) and O(ad_password) over the TLS-protected connection.
      - V(ntlm) uses NTLM with O(ad_user) in C(DOMAIN\\user) form.
      - V(kerberos) uses GSSAPI; with O(ad_user) and O(ad_password) a ticket is obtained in memory,
        without them the current Kerberos credential cache is used.
      - Falls back to E(CLOUDSYNC_AD_AUTH).
    type: str
    default: simple
    choices: [simple, ntlm, kerberos]
  ad_user:
    description:
      - Account to bind as, as a UPN (C(user@corp.example.com)), C(DOMAIN\\user) or a distinguished name.
      - Falls back to E(CLOUDSYNC_AD_USER).
    type: str
    aliases: [bind_user]
  ad_password:
    description:
      - Password of O(ad_user).
      - Falls back to E(CLOUDSYNC_AD_PASSWORD).
    type: str
    aliases: [bind_password]
  ad_port:
    description:
      - LDAP port, when the domain controllers do not use the default of O(ad_tls_mode).
    type: int
  global_catalog:
    description:
      - Global Catalog endpoint used to resolve users of every domain of the forest, as C(host[:port]).
      - Defaults to the connected domain controller on port 3269 (LDAPS) or 3268 (StartTLS and plain).
      - Falls back to E(CLOUDSYNC_AD_GLOBAL_CATALOG).
    type: str
  ad_timeout:
    description:
      - Seconds to wait for a domain controller to accept a connection or answer a request.
      - A write that is not answered in time stops the run (the next run finds what was written and completes the rest).
        Member values are written 5,000 to a request. On the project's Samba DC holding 200,000 users, one such add (the fourth
        to a group of 23,000) was once not answered within 60 seconds, in the middle of a first run writing 1.2 million
        members; on the same DC at rest a 5,000-value add took 2.2 to 2.7 seconds whatever the group's size (0 to 20,000
        members, C(benchmarks/member_add_growth.py)). Raise it for the first run of a tenant with many thousands of groups
        and members.
    type: int
    default: 10
  ad_page_size:
    description:
      - Entries per page of a paged search (Windows domain controllers return at most 1000).
    type: int
    default: 1000
'''
