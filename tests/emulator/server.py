"""A stateful HTTPS emulator of Microsoft Graph and the Microsoft identity platform (test fixture).

Faithful to /work/shared/spec/graph-protocol.md (stricter than Graph where unsure): client
credentials (secret and certificate assertion checked for real), an IMDS managed-identity
endpoint, users/groups/members/transitiveMembers with $select/$filter/$top/$count/$expand,
opaque $skiptoken paging, /groups/delta with a change log, $batch, the Graph error envelope,
a resource-unit token bucket with its headers, fault injection and a request log.

In-process::

    emu = start_emulator(tenant_dict)        # or a path to a tenant JSON file
    emu.base_url       # https://127.0.0.1:PORT          (Graph root; append /v1.0 or /beta)
    emu.graph_url      # https://127.0.0.1:PORT/v1.0
    emu.authority_url  # https://127.0.0.1:PORT          (the login host; append /<tenant>)
    emu.authority      # https://127.0.0.1:PORT/<tenant id>  (what msal takes as authority)
    emu.ca_file        # the lab CA that signed the server certificate
    emu.imds_url       # http://127.0.0.1:PORT2  (plain-HTTP IMDS, for AZURE_POD_IDENTITY_AUTHORITY_HOST)
    emu.admin.add_fault(status=429, count=2, retry_after=1)   # see class Admin
    emu.stop()

Standalone: ``python tests/emulator/server.py --generate groups=200,users=2000 --port 8443``.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import base64
import datetime
import email.utils
import hashlib
import hmac
import json
import math
import os
import random
import secrets
import socket
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

_TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from emulator.tenant import (  # noqa: E402
    CAST_SEGMENTS, ODATA_TYPES, QueryError, Tenant, might_match, parse_filter, parse_id_filter, parse_select, render)

GRAPH_RESOURCES = ("https://graph.microsoft.com", "https://graph.microsoft.us", "https://dod-graph.microsoft.us",
                   "https://microsoftgraph.chinacloudapi.cn", "https://canary.graph.microsoft.com",
                   "00000003-0000-0000-c000-000000000000")
JSON_CT = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"

# Application permissions that allow reading each thing (write permissions imply read).
_DIR = {"Directory.Read.All", "Directory.ReadWrite.All"}
READ_PERMS = {
    "user": _DIR | {"User.Read.All", "User.ReadWrite.All"},
    "group": _DIR | {"Group.Read.All", "Group.ReadWrite.All", "GroupMember.Read.All", "GroupMember.ReadWrite.All"},
    "device": _DIR | {"Device.Read.All", "Device.ReadWrite.All"},
    "orgContact": _DIR | {"OrgContact.Read.All"},
    "servicePrincipal": _DIR | {"Application.Read.All", "Application.ReadWrite.All"},
    "organization": _DIR | {"Organization.Read.All", "Organization.ReadWrite.All"},
    "subscribedSkus": _DIR | {"Organization.Read.All", "Organization.ReadWrite.All", "LicenseAssignment.Read.All"},
    "roleManagement": _DIR | {"RoleManagement.Read.Directory", "RoleManagement.Read.All",
                              "RoleManagement.ReadWrite.Directory"},
}

# Built-in directory roles (template ids); roleDefinitionId of a built-in role is its template id.
BUILTIN_ROLES = {
    "62e90394-69f5-4237-9190-012177145e10": "Global Administrator",
    "8ac3fc64-6eca-42ea-9e69-59f4c7b60eb2": "Hybrid Identity Administrator",
    "fe930be7-5e62-47db-91af-98c3a49a38b1": "User Administrator",
    "fdd7a751-b60b-444a-984c-02652fe8fa1c": "Groups Administrator",
    "88d8e3e3-8f55-4a1e-953a-9b9898b8876b": "Directory Readers",
    "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3": "Application Administrator",
    "158c047a-c907-4556-b7ef-446551a6b5f7": "Cloud Application Administrator",
    "f2ef992c-3afb-46b9-b7cf-a126ee74c451": "Global Reader",
}


def _role_definition(rid):
    name = BUILTIN_ROLES.get(rid)
    return {"id": rid, "templateId": rid, "displayName": name or "Custom role", "isBuiltIn": name is not None,
            "isEnabled": True, "description": name or "Custom role"}


# Every limit below traces to a page of Microsoft's documentation:
# * throttling (token bucket per app+tenant of 3,500/5,000/8,000 resource units per 10 s by tenant
#   size, base costs, $select -1 / $expand +1 / $top<20 -1, min 1, the x-ms-* headers, and
#   "Using the priority request header doesn't change the limits"):
#   https://learn.microsoft.com/en-us/graph/throttling-limits#identity-and-access-service-limits
# * page size 1..999 ($top): https://learn.microsoft.com/en-us/graph/api/group-list and
#   https://learn.microsoft.com/en-us/graph/paging
# * $expand on directory objects: at most 20 objects, no nextLink; the in/eq limits of $filter:
#   https://learn.microsoft.com/en-us/graph/known-issues#some-limitations-apply-to-query-parameters
# * $batch: at most 20 requests: https://learn.microsoft.com/en-us/graph/json-batching
# * /groups/delta: $filter on id only, at most 50 ids; no $expand/$top/$orderby:
#   https://learn.microsoft.com/en-us/graph/api/group-delta
# * delta tokens of directory objects live 7 days:
#   https://learn.microsoft.com/en-us/graph/delta-query-overview
# * getByIds: at most 1,000 ids: https://learn.microsoft.com/en-us/graph/api/directoryobject-getbyids
# Resource-unit base costs (throttling page above); anything not listed costs 1.
BASE_COSTS = {"members": 3, "transitiveMembers": 5, "users": 2, "subscribedSkus": 3}
# A URL of the real service, to measure the documented 2,048-character URL limit of advanced
# queries as Graph would see it (the emulator's own host is shorter or longer).
GRAPH_ORIGIN = "https://graph.microsoft.com"

DEFAULT_SETTINGS = {
    "token_lifetime": 3599,           # expires_in of issued access tokens
    "page_default": 100,
    "page_max": 999,
    "list_trailing_empty_page": False,  # a full last page carries a nextLink to an empty page
    "delta_page_objects": 100,        # group objects per delta page
    "delta_page_links": 1000,         # member links per delta page (a larger group is split)
    "delta_leading_empty_page": True,  # a delta round starts with an empty page that has a nextLink
    "delta_token_lifetime": 7 * 86400,
    "delta_filter_max_ids": 50,
    "expand_members_cap": 20,
    "batch_max": 20,
    "throttle_enabled": True,
    "throttle_scale": 1.0,            # multiplies the budget (3,500/5,000/8,000 per window)
    "throttle_limit": None,           # explicit budget per window, overrides size and scale
    "throttle_window": 10.0,          # seconds
    "retry_after_format": "int",      # Retry-After of a bucket 429: "int" (ceil seconds), "float" or "http-date"
    "latency": 0.0,                   # seconds added to every Graph request
    "seed": 0,
    "log_max": 500000,                # request-log entries kept (oldest dropped; counters stay exact)
    "delta_max_rounds": 64,           # delta rounds whose nextLinks stay valid (older: syncStateNotFound)
    "identity_header": "emulator-identity-header",  # App Service managed identity: X-IDENTITY-HEADER
    # Availability switches (a property on beta in the public cloud may be missing elsewhere, and
    # beta may change: https://learn.microsoft.com/en-us/graph/versioning-and-support):
    "beta_available": True,           # False: every /beta request is 400 BadRequest "Invalid version"
    "beta_withdrawn": [],             # property names removed from beta ("onPremisesObjectIdentifier")
}


def _utcnow_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


class GraphError(Exception):
    def __init__(self, status, code, message, headers=None):
        super(GraphError, self).__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class Reply(object):
    """What a handler produces: status, headers, JSON body (or raw bytes)."""
    __slots__ = ("status", "headers", "body", "raw")

    def __init__(self, status, body=None, headers=None, raw=None):
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else {}
        self.raw = raw


# ---------------------------------------------------------------------------------------------
# Throttling
# ---------------------------------------------------------------------------------------------

class Bucket(object):
    def __init__(self, capacity, window):
        self.capacity = float(capacity)
        self.rate = self.capacity / window
        self.level = self.capacity
        self.t = time.monotonic()

    def charge(self, cost, reserve):
        """Take ``cost`` units; returns (ok, retry_after_seconds, used_fraction)."""
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
        self.t = now
        floor = reserve * self.capacity
        if self.level - cost >= floor or (floor == 0 and self.level >= cost):
            self.level -= cost
            return True, 0.0, (self.capacity - self.level) / self.capacity
        wait = (cost + floor - self.level) / self.rate
        return False, max(wait, 0.001), (self.capacity - self.level + cost) / self.capacity


# ---------------------------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------------------------

class Emulator(object):
    def __init__(self, tenant, host="127.0.0.1", port=0, lab_dir=None, imds_port=None, imds_http=True,
                 settings=None, cert_name="graph-emulator"):
        if isinstance(tenant, (str, os.PathLike)):
            with open(tenant) as fh:
                tenant = json.load(fh)
        self.tenant = Tenant(tenant)
        self.settings = dict(DEFAULT_SETTINGS)
        self.settings.update(self.tenant.settings)
        self.settings.update(settings or {})
        self.host = host
        self._lock = threading.RLock()
        self._rng = random.Random(self.settings["seed"])
        self._token_key = secrets.token_bytes(32)
        self.tokens = {}               # access token -> record
        self.tokens_invalid_before = 0.0
        self.buckets = {}
        self.faults = []
        self._fault_ids = 0
        self.log = []
        self._log_base = 0
        self._delta_rounds = []
        self.counters = {"requests": 0, "by_status": {}, "by_kind": {}, "throttled": 0, "faults": 0,
                         "tokens_issued": 0, "emulator_errors": 0}
        self.cursors = {}              # $skiptoken -> (cursor dict, offset)
        self.delta_tokens = {}         # $deltatoken -> record
        self.delta_cursors = {}        # delta $skiptoken -> (context, unit index, member offset)
        self.delta_expired_before = 0.0
        self.delta_reset_before = 0.0
        self._servers = []
        self._conns = set()
        self.admin = Admin(self)
        self._lab_dir = lab_dir
        self._cert_name = cert_name
        self._port = port
        self._imds_port = imds_port
        self._imds_http = imds_http
        self.base_url = self.authority_url = self.graph_url = self.beta_url = self.authority = None
        self.imds_url = None
        self.identity_endpoint = None
        self.ca_file = None

    # -- life cycle ------------------------------------------------------------------------------
    def start(self):
        from lab.pki import default_lab_dir, ensure_ca, issue_cert
        lab_dir = self._lab_dir or default_lab_dir()
        ca_cert, unused = ensure_ca(lab_dir)
        cert, key = issue_cert(lab_dir, self._cert_name, ["localhost"], [self.host, "127.0.0.1"])
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(cert), str(key))
        ctx.set_alpn_protocols(["http/1.1"])
        srv = _Server((self.host, self._port), _Handler, self, ctx)
        self._servers.append(srv)
        port = srv.server_address[1]
        self.ca_file = str(ca_cert)
        self.base_url = "https://%s:%d" % (self.host, port)
        self.authority_url = self.base_url
        self.authority = "%s/%s" % (self.base_url, self.tenant.tenant_id)
        self.graph_url = self.base_url + "/v1.0"
        self.beta_url = self.base_url + "/beta"
        self.admin_url = self.base_url + "/_emulator"
        if self._imds_http:
            isrv = _Server((self.host, self._imds_port or 0), _Handler, self, None)
            self._servers.append(isrv)
            self.imds_url = "http://%s:%d" % (self.host, isrv.server_address[1])
            self.identity_endpoint = self.imds_url + "/msi/token"
        for s in self._servers:
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
                             name="graph-emulator").start()
        return self

    def stop(self):
        for s in self._servers:
            s.shutdown()
            s.server_close()
        self._servers = []
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def info(self):
        return {"base_url": self.base_url, "graph_url": self.graph_url, "beta_url": self.beta_url,
                "authority_url": self.authority_url, "authority": self.authority, "tenant_id": self.tenant.tenant_id,
                "ca_file": self.ca_file, "imds_url": self.imds_url,
                "identity_endpoint": self.identity_endpoint, "identity_header": self.settings["identity_header"],
                "admin_url": self.admin_url, "pid": os.getpid(), "client_ids": sorted(self.tenant.apps)}

    # -- request entry ---------------------------------------------------------------------------
    def handle(self, method, raw_path, headers, body, scheme_https):
        t0 = time.time()
        parts = urlsplit(raw_path)
        path = parts.path
        rid = str(uuid.uuid4())
        crid = headers.get("client-request-id") or headers.get("x-ms-client-request-id") or rid
        entry = {"t": t0, "method": method, "path": raw_path, "status": None, "app": None, "kind": None,
                 "cost": 0, "retry_after": None, "request_id": rid, "client_request_id": crid,
                 "throttled": False, "fault": None, "priority": (headers.get("x-ms-throttle-priority") or "").lower() or None}
        host = headers.get("host") or "%s" % self.host
        base = ("https://" if scheme_https else "http://") + host
        ctx = {"rid": rid, "crid": crid, "base": base, "headers": headers, "entry": entry}
        try:
            if path.startswith("/_emulator/") or path == "/_emulator":
                entry["kind"] = "admin"
                reply = self.admin.http(method, path, parts.query, body)
            elif path.startswith("/metadata/identity/") or path.startswith("/msi/"):
                entry["kind"] = "imds"
                reply = self._imds(method, path, parts.query, headers, ctx)
            elif not scheme_https:
                reply = Reply(404, {"error": "not_found"})
            elif path.startswith("/v1.0/") or path.startswith("/beta/") or path in ("/v1.0", "/beta"):
                entry["kind"] = "graph"
                reply = self._graph_top(method, path, parts.query, headers, body, ctx)
            else:
                entry["kind"] = "identity"
                reply = self._identity(method, path, parts.query, headers, body, ctx)
        except GraphError as e:
            reply = self.error_reply(e.status, e.code, e.message, ctx, e.headers)
        except Exception as e:  # pragma: no cover - an emulator bug must be visible, not a hang
            import traceback
            traceback.print_exc()
            with self._lock:
                self.counters["emulator_errors"] += 1
            reply = self.error_reply(500, "InternalServerError", "emulator bug: %r" % (e,), ctx)
        reply.headers.setdefault("request-id", rid)
        reply.headers.setdefault("client-request-id", crid)
        entry["status"] = reply.status
        entry["t_end"] = time.time()
        if entry["kind"] != "admin":
            self._record(entry)
        return reply

    def _record(self, entry):
        with self._lock:
            entry["n"] = self._log_base + len(self.log)
            self.log.append(entry)
            if len(self.log) > self.settings["log_max"]:
                drop = max(1, len(self.log) // 10)
                del self.log[:drop]
                self._log_base += drop
            c = self.counters
            c["requests"] += 1
            st = str(entry["status"])
            c["by_status"][st] = c["by_status"].get(st, 0) + 1
            c["by_kind"][entry["kind"]] = c["by_kind"].get(entry["kind"], 0) + 1
            if entry["throttled"]:
                c["throttled"] += 1
            if entry["fault"]:
                c["faults"] += 1

    def error_reply(self, status, code, message, ctx, headers=None):
        body = {"error": {"code": code, "message": message,
                          "innerError": {"date": _utcnow_iso(), "request-id": ctx["rid"],
                                         "client-request-id": ctx["crid"]}}}
        h = {"Content-Type": JSON_CT}
        h.update(headers or {})
        return Reply(status, body, h)

    # -- faults ----------------------------------------------------------------------------------
    def _fault_for(self, target, path, method):
        with self._lock:
            for f in self.faults:
                if f["target"] not in ("all", target):
                    continue
                if f["match"] and f["match"] not in path:
                    continue
                if f["methods"] and method not in f["methods"]:
                    continue
                if f["count"] is not None and f["count"] <= 0:
                    continue
                if f.get("until") is not None and time.time() >= f["until"]:
                    continue
                if f["rate"] < 1.0 and self._rng.random() >= f["rate"]:
                    continue
                if f["count"] is not None:
                    f["count"] -= 1
                f["hits"] += 1
                return dict(f)
        return None

    def _apply_fault(self, f, ctx):
        """Latency of a fault is slept here; returns a Reply for an error fault, else None."""
        if f.get("latency"):
            time.sleep(f["latency"])
        if not f.get("status"):
            return None
        ctx["entry"]["fault"] = f["id"]
        headers = {}
        ra = f.get("retry_after")
        if ra is not None:
            if f.get("retry_after_format") == "http-date":
                headers["Retry-After"] = email.utils.formatdate(time.time() + float(ra), usegmt=True)
            else:
                headers["Retry-After"] = str(ra)
            ctx["entry"]["retry_after"] = headers["Retry-After"]
        st = f["status"]
        code = {429: "TooManyRequests", 503: "ServiceUnavailable", 504: "GatewayTimeout",
                500: "InternalServerError", 502: "BadGateway"}.get(st, "UnknownError")
        msg = {429: "Too many requests.", 503: "The service is temporarily unavailable.",
               504: "The gateway timed out."}.get(st, "Injected fault.")
        if f["target"] == "token":
            return Reply(st, {"error": "temporarily_unavailable", "error_description": "AADSTS90033: " + msg,
                              "error_codes": [90033], "timestamp": _utcnow_iso(), "trace_id": ctx["rid"],
                              "correlation_id": ctx["crid"]}, dict(headers, **{"Content-Type": "application/json"}))
        return self.error_reply(st, code, msg, ctx, headers)

    # -- identity --------------------------------------------------------------------------------
    def _tenant_matches(self, seg):
        seg = seg.lower()
        if seg == self.tenant.tenant_id:
            return True
        domains = {self.tenant.default_domain.lower()}
        for d in self.tenant.organization.get("verifiedDomains") or []:
            domains.add(d.get("name", "").lower())
        return seg in domains

    def _aad_error(self, status, error, code, desc, ctx):
        ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        body = {"error": error,
                "error_description": "AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s"
                                     % (code, desc, ctx["rid"], ctx["crid"], ts),
                "error_codes": [code], "timestamp": ts, "trace_id": ctx["rid"], "correlation_id": ctx["crid"],
                "error_uri": "%s/error?code=%d" % (self.authority_url, code)}
        return Reply(status, body, {"Content-Type": "application/json; charset=utf-8"})

    def _identity(self, method, path, query, headers, body, ctx):
        segs = [s for s in path.split("/") if s]
        ctx["entry"]["kind"] = "identity"
        if len(segs) == 4 and segs[1:] == ["v2.0", ".well-known", "openid-configuration"] and method == "GET":
            ctx["entry"]["kind"] = "openid"
            t = segs[0]
            if t.lower() not in ("common", "organizations") and not self._tenant_matches(t):
                return self._aad_error(400, "invalid_tenant", 90002, "Tenant '%s' not found." % t, ctx)
            tid = self.tenant.tenant_id if t.lower() not in ("common", "organizations") else t
            root = ctx["base"]
            cfg = {"token_endpoint": "%s/%s/oauth2/v2.0/token" % (root, tid),
                   "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                   "jwks_uri": "%s/%s/discovery/v2.0/keys" % (root, tid),
                   "response_modes_supported": ["query", "fragment", "form_post"],
                   "subject_types_supported": ["pairwise"],
                   "id_token_signing_alg_values_supported": ["RS256"],
                   "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                   "scopes_supported": ["openid", "profile", "email", "offline_access"],
                   "issuer": "%s/%s/v2.0" % (root, self.tenant.tenant_id if tid in ("common", "organizations") else tid),
                   "request_uri_parameter_supported": False,
                   "authorization_endpoint": "%s/%s/oauth2/v2.0/authorize" % (root, tid),
                   "device_authorization_endpoint": "%s/%s/oauth2/v2.0/devicecode" % (root, tid),
                   "http_logout_supported": True, "frontchannel_logout_supported": True,
                   "end_session_endpoint": "%s/%s/oauth2/v2.0/logout" % (root, tid),
                   "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid", "roles"],
                   "tenant_region_scope": "EU", "cloud_instance_name": "microsoftonline.com",
                   "cloud_graph_host_name": "graph.windows.net", "msgraph_host": "graph.microsoft.com"}
            return Reply(200, cfg, {"Content-Type": "application/json; charset=utf-8"})
        if len(segs) == 4 and segs[1:] == ["oauth2", "v2.0", "token"]:
            ctx["entry"]["kind"] = "token"
            f = self._fault_for("token", path, method)
            if f:
                r = self._apply_fault(f, ctx)
                if r is not None:
                    return r
            if method != "POST":
                return self._aad_error(405, "invalid_request", 900561,
                                       "The endpoint only accepts POST requests.", ctx)
            return self._token(segs[0], headers, body, ctx)
        return Reply(404, {"error": "not_found", "error_description": "No such endpoint: %s" % path},
                     {"Content-Type": "application/json"})

    def _token(self, tseg, headers, body, ctx):
        if tseg.lower() in ("common", "organizations", "consumers"):
            return self._aad_error(400, "invalid_request", 50059,
                                   "No tenant-identifying information found in either the request or implied by any "
                                   "provided credentials.", ctx)
        if not self._tenant_matches(tseg):
            return self._aad_error(400, "invalid_request", 90002,
                                   "Tenant '%s' not found. Check to make sure you have the correct tenant ID and are "
                                   "signing into the correct cloud." % tseg, ctx)
        ctype = (headers.get("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return self._aad_error(400, "invalid_request", 900144,
                                   "The request body must contain the following parameter: 'grant_type'.", ctx)
        form = {}
        for k, v in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
            form[k] = v
        # client_secret_basic: Authorization: Basic base64(client_id:secret)
        auth = headers.get("authorization") or ""
        if auth.lower().startswith("basic "):
            try:
                cid, unused, sec = base64.b64decode(auth[6:]).decode("utf-8").partition(":")
                form.setdefault("client_id", cid)
                form.setdefault("client_secret", sec)
            except (ValueError, UnicodeDecodeError):
                pass
        gt = form.get("grant_type")
        if not gt:
            return self._aad_error(400, "invalid_request", 900144,
                                   "The request body must contain the following parameter: 'grant_type'.", ctx)
        if gt != "client_credentials":
            return self._aad_error(400, "unsupported_grant_type", 70003,
                                   "The app requested an unsupported grant type '%s'." % gt, ctx)
        cid = (form.get("client_id") or "").lower()
        if not cid:
            return self._aad_error(400, "invalid_request", 900144,
                                   "The request body must contain the following parameter: 'client_id'.", ctx)
        ctx["entry"]["app"] = cid
        scope = form.get("scope") or ""
        if not scope:
            return self._aad_error(400, "invalid_request", 900144,
                                   "The request body must contain the following parameter: 'scope'.", ctx)
        scopes = scope.split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return self._aad_error(400, "invalid_scope", 1002012,
                                   "The provided value for scope %s is not valid. Client credential flows must have a "
                                   "scope value with /.default suffixed to the resource identifier "
                                   "(application ID URI)." % scope, ctx)
        resource = scopes[0][:-len("/.default")].rstrip("/")
        if resource.lower() not in GRAPH_RESOURCES and resource.lower() != ctx["base"].lower():
            return self._aad_error(400, "invalid_resource", 500011,
                                   "The resource principal named %s was not found in the tenant named %s. This can "
                                   "happen if the application has not been installed by the administrator of the "
                                   "tenant." % (resource, self.tenant.tenant_id), ctx)
        app = self.tenant.apps.get(cid)
        if app is None:
            return self._aad_error(400, "unauthorized_client", 700016,
                                   "Application with identifier '%s' was not found in the directory '%s'. This can "
                                   "happen if the application has not been installed by the administrator of the "
                                   "tenant or consented to by any user in the tenant." % (cid, self.tenant.tenant_id), ctx)
        if "client_secret" in form:
            if form["client_secret"] not in (app.get("secrets") or []):
                return self._aad_error(401, "invalid_client", 7000215,
                                       "Invalid client secret provided. Ensure the secret being sent in the request is "
                                       "the client secret value, not the client secret ID, for a secret added to app "
                                       "'%s'." % cid, ctx)
        elif "client_assertion" in form:
            if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
                return self._aad_error(400, "invalid_request", 7000219,
                                       "'client_assertion' or 'client_secret' is required: 'client_assertion_type' "
                                       "must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.", ctx)
            err = self._check_assertion(app, cid, form["client_assertion"], tseg, ctx)
            if err is not None:
                return err
        else:
            return self._aad_error(401, "invalid_client", 7000218,
                                   "The request body must contain the following parameter: 'client_assertion' or "
                                   "'client_secret'.", ctx)
        tok, exp_in = self.issue_token(app["principal_id"], cid, app.get("permissions") or [], resource)
        return Reply(200, {"token_type": "Bearer", "expires_in": exp_in, "ext_expires_in": exp_in,
                           "access_token": tok}, {"Content-Type": "application/json; charset=utf-8",
                                                  "Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    def _check_assertion(self, app, cid, assertion, tseg, ctx):
        import jwt
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as e:
            return self._aad_error(401, "invalid_client", 50027,
                                   "JWT token is invalid or malformed (%s)." % e, ctx)
        alg = header.get("alg")
        if alg not in ("RS256", "PS256"):
            return self._aad_error(401, "invalid_client", 5002738,
                                   "Invalid JWT token. '%s' is not a supported signature algorithm." % alg, ctx)
        x5t, x5t256 = header.get("x5t"), header.get("x5t#S256")
        # base64url, with or without padding (msal pads)
        x5t = x5t.rstrip("=") if isinstance(x5t, str) else None
        x5t256 = x5t256.rstrip("=") if isinstance(x5t256, str) else None
        if not x5t and not x5t256:
            return self._aad_error(401, "invalid_client", 700027,
                                   "Client assertion failed signature validation. The assertion header has no x5t "
                                   "or x5t#S256 thumbprint.", ctx)
        cert = None
        for pem in app.get("certificates") or []:
            c = x509.load_pem_x509_certificate(pem.encode("ascii") if isinstance(pem, str) else pem)
            if (x5t and _b64url(c.fingerprint(hashes.SHA1())) == x5t) or \
                    (x5t256 and _b64url(c.fingerprint(hashes.SHA256())) == x5t256):
                cert = c
                break
        if cert is None:
            return self._aad_error(401, "invalid_client", 700027,
                                   "The certificate with identifier used to sign the client assertion is not "
                                   "registered on application. [Reason - The key was not found., Thumbprint of key "
                                   "used by client: '%s']" % (x5t or x5t256), ctx)
        root = ctx["base"]
        auds = ["%s/%s/oauth2/v2.0/token" % (root, t) for t in sorted({tseg, self.tenant.tenant_id})]
        try:
            claims = jwt.decode(assertion, cert.public_key(), algorithms=[alg], audience=auds,
                                options={"require": ["exp", "aud", "iss", "sub", "jti"]}, leeway=300)
        except jwt.ExpiredSignatureError:
            return self._aad_error(401, "invalid_client", 700024,
                                   "Client assertion is not within its valid time range.", ctx)
        except jwt.InvalidAudienceError:
            return self._aad_error(401, "invalid_client", 50027,
                                   "Invalid JWT token. Token audience is invalid: expected the token endpoint %s."
                                   % auds[0], ctx)
        except jwt.InvalidSignatureError:
            return self._aad_error(401, "invalid_client", 700027, "Client assertion failed signature validation.", ctx)
        except jwt.PyJWTError as e:
            return self._aad_error(401, "invalid_client", 50027, "JWT token is invalid or malformed (%s)." % e, ctx)
        if str(claims.get("iss", "")).lower() != cid or str(claims.get("sub", "")).lower() != cid:
            return self._aad_error(401, "invalid_client", 700021,
                                   "Client assertion application identifier doesn't match 'client_id' parameter.", ctx)
        if not claims.get("jti"):
            return self._aad_error(401, "invalid_client", 50027, "JWT token is invalid or malformed (no jti).", ctx)
        return None

    def issue_token(self, principal_id, client_id, permissions, resource):
        lifetime = int(self.settings["token_lifetime"])
        now = time.time()
        claims = {"aud": resource, "iss": "https://sts.windows.net/%s/" % self.tenant.tenant_id, "iat": int(now),
                  "nbf": int(now), "exp": int(now + lifetime), "appid": client_id, "oid": principal_id,
                  "sub": principal_id, "tid": self.tenant.tenant_id, "roles": sorted(permissions), "idtyp": "app",
                  "uti": secrets.token_hex(8), "ver": "1.0"}
        head = _b64url(_dumps({"typ": "JWT", "alg": "HS256"}))
        payload = _b64url(_dumps(claims))
        sig = _b64url(hmac.new(self._token_key, ("%s.%s" % (head, payload)).encode(), hashlib.sha256).digest())
        tok = "%s.%s.%s" % (head, payload, sig)
        with self._lock:
            self.tokens[tok] = {"principal_id": principal_id, "app": client_id, "permissions": set(permissions),
                                "exp": now + lifetime, "iat": now, "resource": resource}
            self.counters["tokens_issued"] += 1
        return tok, lifetime

    # -- IMDS ------------------------------------------------------------------------------------
    def _imds(self, method, path, query, headers, ctx):
        """Azure VM IMDS (``/metadata/identity/oauth2/token``, api-version 2018-02-01, header
        ``Metadata: true``) and App Service (``/msi/token``, api-version 2019-08-01, header
        ``X-IDENTITY-HEADER`` = setting ``identity_header``)."""
        f = self._fault_for("imds", path, method)
        if f:
            r = self._apply_fault(f, ctx)
            if r is not None:
                return r
        h = {"Content-Type": "application/json; charset=utf-8"}
        app_service = path.rstrip("/") == "/msi/token"
        if (path.rstrip("/") != "/metadata/identity/oauth2/token" and not app_service) or method != "GET":
            return Reply(404, {"error": "not_found", "error_description": "Not found"}, h)
        params = dict(parse_qsl(query, keep_blank_values=True))
        if app_service:
            if headers.get("x-identity-header") != self.settings["identity_header"]:
                return Reply(401, {"statusCode": 401, "message": "X-IDENTITY-HEADER missing or wrong"}, h)
            if params.get("api-version") != "2019-08-01":
                return Reply(400, {"statusCode": 400, "message": "api-version 2019-08-01 expected"}, h)
        else:
            if (headers.get("metadata") or "").lower() != "true":
                return Reply(400, {"error": "invalid_request",
                                   "error_description": "Required metadata header not specified"}, h)
            if params.get("api-version") != "2018-02-01":
                return Reply(400, {"error": "invalid_request",
                                   "error_description": "Invalid or missing api-version (2018-02-01 expected)"}, h)
        resource = (params.get("resource") or "").rstrip("/")
        if not resource:
            return Reply(400, {"error": "invalid_request", "error_description": "Required audience parameter not specified"}, h)
        if resource.lower() not in GRAPH_RESOURCES:
            return Reply(400, {"error": "invalid_resource",
                               "error_description": "AADSTS500011: The resource principal named %s was not found in "
                                                    "the tenant." % resource,
                               "statusCode": 400, "message": "resource not found: %s" % resource}, h)
        ident = None
        keys = ("client_id", "object_id", "principal_id", "msi_res_id", "mi_res_id")
        sel = [(k, params[k].lower()) for k in keys if params.get(k)]
        for mi in self.tenant.managed_identities:
            if not sel:
                if mi.get("type", "system") == "system":
                    ident = mi
                    break
                continue
            k, v = sel[0]
            want = {"client_id": mi.get("client_id"), "object_id": mi.get("principal_id"),
                    "principal_id": mi.get("principal_id"), "msi_res_id": mi.get("resource_id"),
                    "mi_res_id": mi.get("resource_id")}[k]
            if mi.get("type") == "user" and want and want.lower() == v:
                ident = mi
                break
        if ident is None:
            return Reply(400, {"error": "invalid_request", "error_description": "Identity not found",
                               "statusCode": 400, "message": "Identity not found"}, h)
        ctx["entry"]["app"] = ident.get("client_id")
        tok, exp_in = self.issue_token(ident["principal_id"], ident.get("client_id", ""), ident.get("permissions") or [],
                                       resource)
        now = int(time.time())
        if app_service:
            return Reply(200, {"access_token": tok, "client_id": ident.get("client_id", ""),
                               "expires_on": str(now + exp_in), "resource": params.get("resource"),
                               "token_type": "Bearer"}, h)
        return Reply(200, {"access_token": tok, "client_id": ident.get("client_id", ""), "expires_in": str(exp_in),
                           "expires_on": str(now + exp_in), "ext_expires_in": str(exp_in), "not_before": str(now),
                           "resource": params.get("resource"), "token_type": "Bearer"}, h)

    # -- Graph -----------------------------------------------------------------------------------
    def _authenticate(self, headers, ctx):
        auth = headers.get("authorization") or ""
        www = {"WWW-Authenticate": 'Bearer realm="", authorization_uri="%s/common/oauth2/authorize", '
                                   'client_id="00000003-0000-0000-c000-000000000000"' % self.authority_url}
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.", www)
        tok = auth[7:].strip()
        rec = self.tokens.get(tok)
        if rec is None:
            raise GraphError(401, "InvalidAuthenticationToken",
                             "IDX14100: JWT is not well formed or its signature is not valid.", www)
        if rec["exp"] <= time.time() or rec["iat"] < self.tokens_invalid_before:
            raise GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.", www)
        ctx["entry"]["app"] = rec["app"]
        return rec

    def _graph_top(self, method, path, query, headers, body, ctx):
        lat = self.settings["latency"]
        if lat:
            time.sleep(lat)
        principal = self._authenticate(headers, ctx)
        f = self._fault_for("graph", path, method)
        if f:
            r = self._apply_fault(f, ctx)
            if r is not None:
                return r
        version, unused, rest = path[1:].partition("/")
        if version == "beta" and not self.settings["beta_available"]:
            raise GraphError(400, "BadRequest", "Invalid version: %s" % version)
        if rest == "$batch":
            if method != "POST":
                raise GraphError(405, "Request_BadRequest", "The $batch endpoint only accepts POST.")
            ctx["entry"]["kind"] = "batch"
            return self._batch(version, headers, body, principal, ctx)
        return self._graph_one(method, version, rest, query, headers, principal, ctx, body)

    def _graph_one(self, method, version, rest, query, headers, principal, ctx, body=b""):
        """One Graph request (top level or a $batch item): cost, throttle, permission, handler."""
        segs = [s for s in rest.split("/") if s]
        try:
            params = {}
            for k, v in parse_qsl(query, keep_blank_values=True):
                kl = k.lower() if k.startswith("$") else k
                if kl in params:
                    raise QueryError("Request_BadRequest", "Query option '%s' was specified more than once." % k)
                params[kl] = v
        except ValueError:
            raise GraphError(400, "Request_BadRequest", "Invalid query string.")
        cost = self._cost(segs, params)
        ctx["entry"]["cost"] = cost
        hdrs = {}
        self._throttle(principal, cost, headers, ctx, hdrs)
        if method == "POST" and [x.lower() for x in segs] == ["directoryobjects", "getbyids"]:
            return self._answer(hdrs, self._get_by_ids, version, headers, body, principal, ctx)
        if method != "GET":
            raise GraphError(405, "Request_BadRequest",
                             "The emulator serves reads only; change state through /_emulator.", hdrs)
        return self._answer(hdrs, self._route, version, segs, params, headers, principal, ctx)

    @staticmethod
    def _answer(hdrs, handler, *args):
        """Run a handler; its reply or error carries the throttling headers ``hdrs``."""
        try:
            reply = handler(*args)
        except QueryError as e:
            raise GraphError(e.status, e.code, e.message, hdrs)
        except GraphError as e:
            e.headers.update(hdrs)
            raise
        reply.headers.update(hdrs)
        return reply

    def _cost(self, segs, params):
        last = None
        for s in segs:
            if s in BASE_COSTS:
                last = s
        if segs and segs[-1].startswith("microsoft.graph.") and len(segs) >= 2:
            last = segs[-2] if segs[-2] in BASE_COSTS else last
        if [x.lower() for x in segs] == ["directoryobjects", "getbyids"]:
            return 2 if "$select" in params else 5
        if segs == ["users"]:
            cost = 2
        elif last in ("members", "transitiveMembers"):
            cost = BASE_COSTS[last]
        elif segs and segs[0] == "subscribedSkus":
            cost = 3
        else:
            cost = 1
        if "$select" in params:
            cost -= 1
        if "$expand" in params:
            cost += 1
        try:
            if "$top" in params and int(params["$top"]) < 20:
                cost -= 1
        except ValueError:
            pass
        return max(cost, 1)

    def _throttle(self, principal, cost, headers, ctx, hdrs):
        hdrs["x-ms-resource-unit"] = str(cost)
        s = self.settings
        if not s["throttle_enabled"]:
            return
        key = (principal["app"], self.tenant.tenant_id)
        # x-ms-throttle-priority is recorded in the log only: "Using the priority request header
        # doesn't change the limits" (throttling page); with one client there is nobody to throttle
        # before it.
        with self._lock:
            b = self.buckets.get(key)
            if b is None:
                if s["throttle_limit"]:
                    cap = float(s["throttle_limit"])
                else:
                    n = self.tenant.user_count
                    cap = (3500 if n < 50 else 5000 if n <= 500 else 8000) * float(s["throttle_scale"])
                b = self.buckets[key] = Bucket(cap, float(s["throttle_window"]))
            ok, wait, used = b.charge(cost, 0.0)
        if used > 0.8:
            hdrs["x-ms-throttle-limit-percentage"] = "%.2f" % min(used, 1.8)
        if ok:
            return
        fmt = s["retry_after_format"]
        if fmt == "http-date":
            ra = email.utils.formatdate(time.time() + math.ceil(wait), usegmt=True)
        elif fmt == "float":
            ra = "%.3f" % wait
        else:
            ra = str(int(math.ceil(wait)))
        ctx["entry"]["throttled"] = True
        ctx["entry"]["retry_after"] = ra
        hdrs.update({"Retry-After": ra, "x-ms-throttle-scope": "Tenant_Application/Read/%s/%s" % key,
                     "x-ms-throttle-information": "ResourceUnitLimitExceeded"})
        raise GraphError(429, "TooManyRequests", "Too many requests.", dict(hdrs))

    def _require(self, principal, what):
        if not (principal["permissions"] & READ_PERMS[what]):
            raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")

    def _route(self, version, segs, params, headers, principal, ctx):
        if version not in ("v1.0", "beta") or (version == "beta" and not self.settings["beta_available"]):
            raise GraphError(400, "BadRequest", "Invalid version: %s" % version)
        if not segs:
            raise GraphError(400, "BadRequest", "Invalid request URL.")
        withdrawn = self.settings["beta_withdrawn"] if version == "beta" else ()
        for p in (params.get("$select") or "").split(","):
            if p.strip() and p.strip() in withdrawn:
                on = "group" if segs[0].lower() == "groups" and "members" not in segs else "user"
                raise GraphError(400, "Request_BadRequest",
                                 "Could not find a property named '%s' on type 'microsoft.graph.%s'." % (p.strip(), on))
        head = segs[0]
        lower = head.lower()
        if lower == "me":
            raise GraphError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
        if lower == "organization":
            self._require(principal, "organization")
            org = dict(self.tenant.organization)
            org.setdefault("id", self.tenant.tenant_id)
            org["tenantType"] = self.tenant.tenant_type
            org.setdefault("displayName", "Contoso")
            org.setdefault("verifiedDomains", [{"name": self.tenant.default_domain, "isDefault": True,
                                                "isInitial": True, "type": "Managed", "capabilities": "Email"}])
            if len(segs) == 2:
                if segs[1].lower() != self.tenant.tenant_id:
                    raise GraphError(404, "Request_ResourceNotFound",
                                     "Resource '%s' does not exist or one of its queried reference-property objects "
                                     "are not present." % segs[1])
                return self._json({"@odata.context": "%s/%s/$metadata#organization/$entity" % (ctx["base"], version), **org})
            return self._json({"@odata.context": "%s/%s/$metadata#organization" % (ctx["base"], version), "value": [org]})
        if lower == "subscribedskus" and len(segs) == 1:
            self._require(principal, "subscribedSkus")
            if "$filter" in params:
                raise GraphError(400, "Request_UnsupportedQuery", "$filter is not supported on subscribedSkus.")
            skus = []
            for s in self.tenant.skus:
                sku = {"accountId": self.tenant.tenant_id, "appliesTo": "User", "capabilityStatus": "Enabled",
                       "consumedUnits": 0, "prepaidUnits": {"enabled": 25, "suspended": 0, "warning": 0, "lockedOut": 0}}
                sku.update(s)
                sku.setdefault("id", "%s_%s" % (self.tenant.tenant_id, sku.get("skuId")))
                skus.append(sku)
            return self._json({"@odata.context": "%s/%s/$metadata#subscribedSkus" % (ctx["base"], version), "value": skus})
        if segs[:2] == ["roleManagement", "directory"] and len(segs) in (3, 4) and \
                segs[2] in ("roleAssignments", "roleDefinitions"):
            self._require(principal, "roleManagement")
            return self._roles(version, segs, params, ctx)
        # servicePrincipals(appId='...') -> servicePrincipals/{id}
        import re
        m = re.match(r"^servicePrincipals\(appId='([0-9A-Fa-f-]+)'\)$", head)
        if m:
            sp = next((self.tenant.objects[i] for i in self.tenant.ids_of_type("servicePrincipal")
                       if (self.tenant.objects[i].get("appId") or "").lower() == m.group(1).lower()), None)
            if sp is None:
                self._require(principal, "servicePrincipal")
                raise self._not_found(m.group(1))
            segs = ["servicePrincipals", sp["id"]] + segs[1:]
            head, lower = "servicePrincipals", "serviceprincipals"
        coll = {"users": "user", "groups": "group", "devices": "device", "contacts": "orgContact",
                "serviceprincipals": "servicePrincipal"}.get(lower)
        if coll is None and lower == "directoryobjects" and len(segs) == 2:
            obj = self.tenant.get(segs[1])
            if obj is None:
                raise self._not_found(segs[1])
            self._require(principal, obj["_t"])
            sel = parse_select(params.get("$select"), [obj["_t"]], version)
            out = render(obj, sel, version, with_type=True)
            return self._json(dict({"@odata.context": "%s/%s/$metadata#directoryObjects/$entity" % (ctx["base"], version)}, **out))
        if coll is None:
            raise GraphError(400, "BadRequest", "Resource not found for the segment '%s'." % head)
        with self.tenant.lock:
            return self._collection_route(version, coll, head, segs, params, headers, principal, ctx)

    def _get_by_ids(self, version, headers, body, principal, ctx):
        """POST /directoryObjects/getByIds {"ids": [...], "types": [...]}: at most 1,000 ids;
        unknown ids are left out; needs Directory.Read.All (as documented)."""
        if not (principal["permissions"] & _DIR):
            raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        if (headers.get("content-type") or "").split(";")[0].strip().lower() != "application/json":
            raise GraphError(400, "Request_BadRequest", "A JSON body is required.")
        try:
            doc = json.loads(body.decode("utf-8"))
            ids = doc["ids"]
            types = doc.get("types") or list(ODATA_TYPES)
            if not isinstance(ids, list) or not isinstance(types, list):
                raise ValueError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise GraphError(400, "Request_BadRequest", "Invalid request body: expected {\"ids\": [...]}.")
        if not ids or len(ids) > 1000:
            raise GraphError(400, "Request_BadRequest", "The ids list must hold 1 to 1000 ids.")
        tset = set()
        for t in types:
            t2 = t.split(".")[-1]
            if t2 not in ODATA_TYPES:
                raise GraphError(400, "Request_BadRequest", "Invalid type '%s'." % t)
            tset.add(t2)
        value = []
        with self.tenant.lock:
            for i in ids:
                o = self.tenant.objects.get(str(i).lower())
                if o is not None and o["_t"] in tset:
                    value.append(render(o, None, version, with_type=True))
        return self._json({"@odata.context": "%s/%s/$metadata#directoryObjects" % (ctx["base"], version), "value": value})

    def _roles(self, version, segs, params, ctx):
        import re
        for k in params:
            if k not in ("$filter", "$expand", "$select"):
                raise GraphError(400, "Request_BadRequest", "Query option '%s' is not supported here." % k)
        if segs[2] == "roleDefinitions":
            if len(segs) == 4:
                rd = BUILTIN_ROLES.get(segs[3].lower())
                if rd is None:
                    raise self._not_found(segs[3])
                return self._json(dict({"@odata.context": "%s/%s/$metadata#roleManagement/directory/roleDefinitions/$entity"
                                                          % (ctx["base"], version)}, **_role_definition(segs[3].lower())))
            return self._json({"@odata.context": "%s/%s/$metadata#roleManagement/directory/roleDefinitions"
                               % (ctx["base"], version), "value": [_role_definition(r) for r in BUILTIN_ROLES]})
        want = None
        flt = params.get("$filter")
        if flt:
            m = re.match(r"^\s*(principalId|roleDefinitionId)\s+eq\s+'([^']*)'\s*$", flt)
            if not m:
                raise GraphError(400, "Request_UnsupportedQuery", "Unsupported filter on roleAssignments: %s" % flt)
            want = (m.group(1), m.group(2).lower())
        expand = params.get("$expand")
        if expand not in (None, "roleDefinition"):
            raise GraphError(400, "Request_BadRequest", "Could not find a property named '%s' on type "
                             "'microsoft.graph.unifiedRoleAssignment'." % expand)
        items = []
        for ra in self.tenant.role_assignments:
            item = {"id": ra.get("id") or _b64url(hashlib.sha1(("%s|%s" % (ra["principalId"], ra["roleDefinitionId"]))
                                                               .encode()).digest()),
                    "principalId": ra["principalId"], "roleDefinitionId": ra["roleDefinitionId"],
                    "directoryScopeId": ra.get("directoryScopeId", "/")}
            if want and str(item[want[0]]).lower() != want[1]:
                continue
            if expand:
                item["roleDefinition"] = _role_definition(ra["roleDefinitionId"].lower())
            items.append(item)
        if len(segs) == 4:
            hit = [i for i in items if i["id"] == segs[3]]
            if not hit:
                raise self._not_found(segs[3])
            return self._json(hit[0])
        return self._json({"@odata.context": "%s/%s/$metadata#roleManagement/directory/roleAssignments"
                           % (ctx["base"], version), "value": items})

    def _not_found(self, oid):
        return GraphError(404, "Request_ResourceNotFound",
                          "Resource '%s' does not exist or one of its queried reference-property objects are not "
                          "present." % oid)

    def _collection_route(self, version, coll, head, segs, params, headers, principal, ctx):
        advanced = ((headers.get("consistencylevel") or "").lower() == "eventual"
                    and (params.get("$count") or "").lower() == "true")
        if len(segs) == 1:
            self._require(principal, coll)
            return self._list(version, [coll], lambda: self.tenant.ids_of_type(coll), params, headers, advanced,
                              principal, ctx, "%s" % head, with_type=False)
        if len(segs) == 2 and segs[1] == "$count":
            self._require(principal, coll)
            return self._count_only(coll, [coll], lambda: self.tenant.ids_of_type(coll), params, headers)
        if coll == "group" and len(segs) == 2 and segs[1] in ("delta", "delta()"):
            self._require(principal, "group")
            return self._delta(version, params, ctx)
        obj = self.tenant.get(segs[1], coll)
        if obj is None:
            self._require(principal, coll)
            raise self._not_found(segs[1])
        if len(segs) == 2:
            self._require(principal, coll)
            for k in params:
                if k not in ("$select", "$expand"):
                    raise GraphError(400, "Request_BadRequest", "Query option '%s' is not allowed on a single object." % k)
            sel = parse_select(params.get("$select"), [coll], version)
            out = {"@odata.context": "%s/%s/$metadata#%s/$entity" % (ctx["base"], version, head)}
            out.update(render(obj, sel, version))
            if "$expand" in params:
                out.update(self._expand(version, obj, params["$expand"], principal))
            return self._json(out)
        rel = segs[2]
        if coll == "group" and rel == "onPremisesSyncBehavior" and len(segs) == 3:
            return self._sync_behavior(version, obj, params, principal, ctx)
        if coll == "group" and rel in ("members", "transitiveMembers"):
            self._require(principal, "group")
            gid = obj["id"]
            src = (lambda: self.tenant.member_ids(gid)) if rel == "members" else (lambda: self.tenant.transitive_member_ids(gid))
            tail = segs[3:]
            types = list(ODATA_TYPES)
            if tail and tail[0] in CAST_SEGMENTS:
                types = [CAST_SEGMENTS[tail[0]]]
                tail = tail[1:]
            if tail == ["$count"]:
                return self._count_only("directoryObject", types, src, params, headers)
            if tail:
                raise GraphError(400, "BadRequest", "Resource not found for the segment '%s'." % tail[0])
            if "$filter" in params and not advanced:
                raise GraphError(400, "Request_UnsupportedQuery",
                                 "$filter on a relationship needs the advanced query capabilities: add $count=true "
                                 "and the header ConsistencyLevel: eventual.")
            return self._list(version, types, src, params, headers, advanced, principal, ctx,
                              "directoryObjects" if len(types) > 1 else "%ss" % types[0],
                              # minimal metadata: @odata.type only where it differs from the collection's type
                              with_type=len(types) > 1)
        if coll == "user" and rel in ("memberOf", "transitiveMemberOf"):
            self._require(principal, "user")
            uid = obj["id"]
            return self._list(version, ["group"], lambda: {g: None for g in self.tenant.member_of.get(uid, ())},
                              params, headers, advanced, principal, ctx, "directoryObjects", with_type=True)
        raise GraphError(400, "BadRequest", "Resource not found for the segment '%s'." % rel)

    def _sync_behavior(self, version, obj, params, principal, ctx):
        """``GET /beta/groups/{id}/onPremisesSyncBehavior`` (beta only; no query options; application
        permission Group-OnPremisesSyncBehavior.ReadWrite.All, there is no read-only one):
        https://learn.microsoft.com/en-us/graph/api/onpremisessyncbehavior-get?view=graph-rest-beta"""
        if version != "beta":
            raise GraphError(400, "BadRequest", "Resource not found for the segment 'onPremisesSyncBehavior'.")
        if not (principal["permissions"] & {"Group-OnPremisesSyncBehavior.ReadWrite.All"}):
            raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        for k in params:
            raise GraphError(400, "Request_BadRequest", "Query option '%s' is not supported." % k)
        behaviour = obj.get("onPremisesSyncBehavior") or {}
        return self._json({"@odata.context": "%s/%s/$metadata#groups('%s')/onPremisesSyncBehavior/$entity"
                                             % (ctx["base"], version, obj["id"]),
                           "id": obj["id"], "isCloudManaged": bool(behaviour.get("isCloudManaged"))})

    def _expand(self, version, obj, raw, principal):
        import re
        m = re.match(r"^\s*members(?:\(\s*\$select=([A-Za-z0-9_,]+)\s*\))?\s*$", raw)
        if obj["_t"] != "group" or not m:
            raise GraphError(400, "Request_BadRequest", "Could not find a property named '%s' on type "
                             "'microsoft.graph.%s'." % (raw.split("(")[0], obj["_t"]))
        sel = parse_select(m.group(1), list(ODATA_TYPES), version) if m.group(1) else ("id", "displayName")
        out = []
        for mid in self.tenant.member_ids(obj["id"]):
            if len(out) >= self.settings["expand_members_cap"]:
                break
            mo = self.tenant.objects.get(mid)
            out.append(render(mo, sel, version, with_type=True,
                              limited=not (principal["permissions"] & READ_PERMS[mo["_t"]])))
        return {"members": out}

    def _count_only(self, type_name, types, source, params, headers):
        if (headers.get("consistencylevel") or "").lower() != "eventual":
            raise GraphError(400, "Request_BadRequest",
                             "Count is not currently supported: the ConsistencyLevel header with the value eventual "
                             "is required.")
        pred = parse_filter(params.get("$filter"), types[0], True) if params.get("$filter") else None
        n = 0
        for i in source():
            o = self.tenant.objects.get(i)
            if o is not None and o["_t"] in types and (pred is None or (might_match(pred, o) and pred(o))):
                n += 1
        return Reply(200, raw=str(n).encode(), headers={"Content-Type": "text/plain"})

    def _json(self, body):
        return Reply(200, body, {"Content-Type": JSON_CT})

    # -- lists and paging ------------------------------------------------------------------------
    _LIST_PARAMS = {"$select", "$filter", "$top", "$count", "$orderby", "$skiptoken", "$expand", "$search"}

    def _list(self, version, types, source, params, headers, advanced, principal, ctx, ctx_name, with_type):
        for k in params:
            if k.startswith("$") and k not in self._LIST_PARAMS:
                if k == "$skip":
                    raise GraphError(400, "Request_BadRequest", "'$skip' is not supported by the service.")
                raise GraphError(400, "Request_BadRequest", "Query option '%s' is not supported." % k)
        if "$search" in params:
            raise GraphError(400, "Request_UnsupportedQuery", "$search is not supported by the emulator.")
        sel = parse_select(params.get("$select"), types, version)
        top = params.get("$top")
        if top is None:
            top = self.settings["page_default"]
        else:
            try:
                top = int(top)
            except ValueError:
                raise GraphError(400, "Request_BadRequest", "Invalid page size specified: '%s'." % top)
            if top < 1 or top > self.settings["page_max"]:
                raise GraphError(400, "Request_BadRequest",
                                 "Invalid page size specified: '%d'. Must be between 1 and %d inclusive."
                                 % (top, self.settings["page_max"]))
        pred = parse_filter(params.get("$filter"), types[0] if len(types) == 1 else "user", advanced, version) \
            if params.get("$filter") is not None else None
        if advanced and params.get("$filter") is not None:
            self._check_url_length(ctx)
        orderby = params.get("$orderby")
        if orderby is not None:
            ob = orderby.strip().split()
            if not ob or ob[0] != "displayName" or len(ob) > 2 or (len(ob) == 2 and ob[1] not in ("asc", "desc")):
                raise GraphError(400, "Request_UnsupportedQuery", "Sorting by '%s' is not supported." % orderby)
            if pred is not None and not advanced:
                raise GraphError(400, "Request_UnsupportedQuery",
                                 "Sorting and filtering together need the advanced query capabilities: add "
                                 "$count=true and the header ConsistencyLevel: eventual.")
        if "$expand" in params and params["$expand"].split("(")[0].strip() != "members":
            raise GraphError(400, "Request_BadRequest", "Could not find a property named '%s' on type "
                             "'microsoft.graph.%s'." % (params["$expand"], types[0]))
        sig = tuple(sorted((k, v) for k, v in params.items() if k != "$skiptoken"))
        token = params.get("$skiptoken")
        first = token is None
        if token is not None:
            with self._lock:
                hit = self.cursors.get(token)
            if hit is None:
                raise GraphError(400, "Directory_ExpiredPageToken",
                                 "The specified page token value has expired and can no longer be included in your "
                                 "request.")
            cursor, offset = hit
            if cursor["sig"] != sig or cursor["path"] != ctx_name:
                raise GraphError(400, "Request_BadRequest",
                                 "The $skiptoken does not belong to this query: follow @odata.nextLink unmodified.")
            ids = cursor["ids"]
        else:
            ids = []
            objs = self.tenant.objects
            tset = set(types)
            for i in source():
                o = objs.get(i)
                if o is None or o["_t"] not in tset:
                    continue
                if pred is not None and not (might_match(pred, o) and pred(o)):
                    continue
                ids.append(i)
            if orderby:
                ids.sort(key=lambda i: (objs[i].get("displayName") or "").lower(),
                         reverse=orderby.strip().endswith("desc"))
            cursor = {"ids": ids, "sig": sig, "path": ctx_name, "created": time.time(), "next": {}}
            offset = 0
        page_ids = ids[offset:offset + top]
        can = {t: bool(principal["permissions"] & READ_PERMS[t]) for t in types}
        value = []
        objs = self.tenant.objects
        for i in page_ids:
            o = objs.get(i)
            if o is None:
                continue
            r = render(o, sel, version, with_type=with_type, limited=not can[o["_t"]])
            if "$expand" in params:
                r.update(self._expand(version, o, params["$expand"], principal))
            value.append(r)
        out = {"@odata.context": "%s/%s/$metadata#%s" % (ctx["base"], version, ctx_name)}
        if first and advanced:
            out["@odata.count"] = len(ids)
        nxt = offset + top
        # list_trailing_empty_page: a full last page still has a nextLink, to an empty page (Graph does this)
        if nxt < len(ids) or (self.settings["list_trailing_empty_page"] and ids and nxt == len(ids)):
            with self._lock:
                tok = cursor["next"].get(nxt)
                if tok is None:
                    tok = secrets.token_urlsafe(24)
                    cursor["next"][nxt] = tok
                    self.cursors[tok] = (cursor, nxt)
                    if len(self.cursors) > 200000:
                        self._prune_cursors()
            q = [(k, v) for k, v in params.items() if k != "$skiptoken"] + [("$skiptoken", tok)]
            path = urlsplit(ctx["entry"]["path"]).path
            if ctx["entry"]["kind"] == "batch_item":
                path = ctx["item_path"]
            out["@odata.nextLink"] = "%s%s?%s" % (ctx["base"], path, urlencode(q, quote_via=quote, safe="$,'()"))
        out["value"] = value
        return self._json(out)

    def _check_url_length(self, ctx):
        """Advanced queries: "the limit is applied on the URL length at 2,048 characters" (Graph known
        issues, query parameters). Measured as the URL would be on graph.microsoft.com."""
        from emulator.tenant import MAX_ADVANCED_URL_CHARS
        if ctx["entry"]["kind"] == "batch_item":
            raw = ctx["item_path"] + (("?" + urlsplit(ctx["entry"]["path"]).query) if "?" in ctx["entry"]["path"] else "")
        else:
            raw = ctx["entry"]["path"]
        n = len(GRAPH_ORIGIN) + len(raw)
        if n > MAX_ADVANCED_URL_CHARS:
            raise GraphError(400, "Request_UnsupportedQuery",
                             "The request URL is %d characters long; at most %d are supported." % (n, MAX_ADVANCED_URL_CHARS))

    def _prune_cursors(self):
        cutoff = time.time() - 3600
        for k in [k for k, (c, unused) in self.cursors.items() if c["created"] < cutoff]:
            del self.cursors[k]

    # -- delta -----------------------------------------------------------------------------------
    def _delta(self, version, params, ctx):
        allowed = {"$select", "$filter", "$deltatoken", "$skiptoken"}
        for k in params:
            if k not in allowed:
                raise GraphError(400, "Request_UnsupportedQuery",
                                 "Query option '%s' is not supported with /groups/delta." % k)
        now = time.time()
        s = self.settings
        tenant = self.tenant
        if params.get("$deltatoken") == "latest" and "$skiptoken" not in params:
            sel = parse_select(params.get("$select"), ["group"], version, extra=("members",))
            flt = parse_id_filter(params["$filter"], s["delta_filter_max_ids"]) if params.get("$filter") is not None else None
            rec = {"seq": tenant.seq, "select": sel, "select_raw": params.get("$select"), "filter": flt,
                   "filter_raw": params.get("$filter"), "created": now}
            return self._delta_page(version, {"units": [], "end_seq": tenant.seq, "rec": rec, "origin": now,
                                              "lazy": False}, 0, 0, ctx)
        if "$skiptoken" in params or "$deltatoken" in params:
            if len(params) != 1:
                raise GraphError(400, "Request_BadRequest",
                                 "A delta token or skip token link must be used unmodified (no other query options).")
            if "$skiptoken" in params:
                with self._lock:
                    hit = self.delta_cursors.get(params["$skiptoken"])
                if hit is None:
                    raise GraphError(400, "syncStateNotFound",
                                     "The sync state is not found or has expired. Start a new delta round.")
                dctx, ui, mo = hit
                self._check_delta_age(dctx["origin"], now, ctx, version, dctx["rec"])
                return self._delta_page(version, dctx, ui, mo, ctx)
            tokv = params["$deltatoken"]
            with self._lock:
                rec = self.delta_tokens.get(tokv)
            if rec is None:
                raise GraphError(400, "syncStateNotFound",
                                 "The sync state is not found or has expired. Start a new delta round.")
            self._check_delta_age(rec["created"], now, ctx, version, rec)
            units = []
            sel = rec["select"]
            sel_set = set(sel) if sel is not None else None
            want_members = sel is not None and "members" in sel
            for gid, e in tenant.changes_since(rec["seq"]):
                if rec["filter"] is not None and gid not in rec["filter"]:
                    continue
                if e["deleted"]:
                    units.append((gid, {"id": gid, "@removed": {"reason": e.get("reason", "deleted")}}, []))
                    continue
                obj = tenant.objects.get(gid)
                if obj is None:
                    continue
                if e["created"]:
                    rec_obj = self._delta_render(obj, sel, version)
                else:
                    changed = e["props"] if sel_set is None else (e["props"] & sel_set)
                    if sel_set is None:
                        from emulator.tenant import GROUP_DEFAULT
                        changed = e["props"] & set(GROUP_DEFAULT)
                    rec_obj = {"id": gid}
                    for p in sorted(changed):
                        rec_obj[p] = obj.get(p)
                    if len(rec_obj) == 1 and not (want_members and e["members"]):
                        continue
                mem = []
                if want_members:
                    for mid, (added, t) in e["members"].items():
                        item = {"@odata.type": ODATA_TYPES[t], "id": mid}
                        if not added:
                            item["@removed"] = {"reason": "deleted"}
                        mem.append(item)
                units.append((gid, rec_obj, mem))
            dctx = {"units": units, "end_seq": tenant.seq, "rec": rec, "origin": rec["created"], "lazy": False}
            self._new_round(dctx)
            return self._delta_page(version, dctx, -1 if s["delta_leading_empty_page"] else 0, 0, ctx, first=True)
        sel = parse_select(params.get("$select"), ["group"], version, extra=("members",))
        flt = None
        if params.get("$filter") is not None:
            flt = parse_id_filter(params["$filter"], s["delta_filter_max_ids"])
        rec = {"seq": tenant.seq, "select": sel, "select_raw": params.get("$select"), "filter": flt,
               "filter_raw": params.get("$filter"), "created": now}
        gids = [g for g in tenant.ids_of_type("group") if flt is None or g in flt]
        snap = {}
        if sel is not None and "members" in sel:
            for g in gids:
                snap[g] = list(tenant.members.get(g, ()))
        dctx = {"units": gids, "snap": snap, "end_seq": tenant.seq, "rec": rec, "origin": now, "lazy": True}
        self._new_round(dctx)
        return self._delta_page(version, dctx, -1 if s["delta_leading_empty_page"] else 0, 0, ctx, first=True)

    def _new_round(self, dctx):
        """Keep the page state of the last ``delta_max_rounds`` rounds (a round of a big tenant holds
        a snapshot of its member lists); the nextLinks of older rounds answer syncStateNotFound."""
        with self._lock:
            dctx["next"] = {}
            self._delta_rounds.append(dctx)
            while len(self._delta_rounds) > self.settings["delta_max_rounds"]:
                old = self._delta_rounds.pop(0)
                for tok in old["next"].values():
                    self.delta_cursors.pop(tok, None)
                old["units"] = []
                old["snap"] = {}

    def _check_delta_age(self, created, now, ctx, version, rec=None):
        if created < self.delta_reset_before:
            loc = "%s/%s/groups/delta" % (ctx["base"], version)
            if rec is not None:
                q = [(k, v) for k, v in (("$select", rec.get("select_raw")), ("$filter", rec.get("filter_raw"))) if v]
                if q:
                    loc += "?" + urlencode(q, quote_via=quote, safe="$,'()")
            raise GraphError(410, "resyncRequired",
                             "Resync required: the delta token is no longer valid. Start again from the Location URL.",
                             {"Location": loc})
        if created < self.delta_expired_before or now - created > self.settings["delta_token_lifetime"]:
            raise GraphError(400, "syncStateNotFound",
                             "The sync state is not found or has expired (delta tokens live about 7 days). "
                             "Start a new delta round.")

    def _delta_render(self, obj, sel, version):
        if sel is None:
            return render(obj, None, version)
        return render(obj, tuple(p for p in sel if p != "members"), version)

    def _delta_page(self, version, dctx, ui, mo, ctx, first=False):
        s = self.settings
        units = dctx["units"]
        rec = dctx["rec"]
        want_members = rec["select"] is not None and "members" in rec["select"]
        value = []
        links = 0
        max_obj, max_links = s["delta_page_objects"], s["delta_page_links"]
        objs = self.tenant.objects
        if ui < 0:
            ui = 0
        else:
            while ui < len(units) and len(value) < max_obj:
                if dctx["lazy"]:
                    gid = units[ui]
                    obj = objs.get(gid)
                    if obj is None or obj["_t"] != "group":
                        ui += 1
                        mo = 0
                        continue
                    record = self._delta_render(obj, rec["select"], version) if mo == 0 else {"id": gid}
                    mem_ids = dctx["snap"].get(gid, ()) if want_members else ()
                    mem = None
                else:
                    gid, full, mem = units[ui]
                    record = dict(full) if mo == 0 else {"id": gid}
                    mem_ids = None
                total = len(mem_ids) if mem_ids is not None else len(mem)
                remaining = total - mo
                room = max_links - links
                if remaining > 0 and room <= 0:
                    break
                take = min(remaining, room)
                if take > 0:
                    if mem_ids is not None:
                        chunk = []
                        for mid in mem_ids[mo:mo + take]:
                            mobj = objs.get(mid)
                            if mobj is not None:
                                chunk.append({"@odata.type": ODATA_TYPES[mobj["_t"]], "id": mid})
                    else:
                        chunk = mem[mo:mo + take]
                    record["members@delta"] = chunk
                    links += take
                value.append(record)
                if take < remaining:
                    mo += take
                    break
                ui += 1
                mo = 0
        out = {"@odata.context": "%s/%s/$metadata#groups" % (ctx["base"], version)}
        if ui >= len(units) and not (first and s["delta_leading_empty_page"] and value == [] and units and ui == 0):
            tok = secrets.token_urlsafe(32)
            nrec = dict(rec)
            nrec["seq"] = dctx["end_seq"]
            nrec["created"] = time.time()
            with self._lock:
                self.delta_tokens[tok] = nrec
            out["@odata.deltaLink"] = "%s/%s/groups/delta?%s" % (ctx["base"], version, urlencode({"$deltatoken": tok}, safe="$"))
        else:
            with self._lock:
                key = (ui, mo)
                nxt = dctx.setdefault("next", {}).get(key)
                if nxt is None:
                    nxt = secrets.token_urlsafe(32)
                    dctx["next"][key] = nxt
                    self.delta_cursors[nxt] = (dctx, ui, mo)
            out["@odata.nextLink"] = "%s/%s/groups/delta?%s" % (ctx["base"], version, urlencode({"$skiptoken": nxt}, safe="$"))
        out["value"] = value
        return self._json(out)

    # -- $batch ----------------------------------------------------------------------------------
    def _batch(self, version, headers, body, principal, ctx):
        ctype = (headers.get("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise GraphError(400, "BadRequest", "Invalid content type: a $batch body must be application/json.")
        try:
            doc = json.loads(body.decode("utf-8"))
            reqs = doc["requests"]
            if not isinstance(reqs, list):
                raise ValueError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise GraphError(400, "BadRequest", "Invalid batch payload: expected {\"requests\": [...]}.")
        if not reqs:
            raise GraphError(400, "BadRequest", "Invalid batch payload: no requests.")
        if len(reqs) > self.settings["batch_max"]:
            raise GraphError(400, "BadRequest", "Limit of %d requests exceeded." % self.settings["batch_max"])
        seen = set()
        for r in reqs:
            if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not r.get("method") or not r.get("url"):
                raise GraphError(400, "BadRequest", "Invalid batch payload: each request needs id (string), method, url.")
            if r["id"] in seen:
                raise GraphError(400, "BadRequest", "Request ids must be unique in a batch: '%s'." % r["id"])
            seen.add(r["id"])
        responses = []
        for r in reqs:
            responses.append(self._batch_item(version, r, headers, principal, ctx))
        self._rng.shuffle(responses)
        return Reply(200, {"responses": responses}, {"Content-Type": JSON_CT})

    def _batch_item(self, version, r, outer_headers, principal, octx):
        url = r["url"]
        rid = str(uuid.uuid4())
        sub_headers = {k.lower(): str(v) for k, v in (r.get("headers") or {}).items()}
        for k in ("x-ms-throttle-priority",):
            if k in outer_headers and k not in sub_headers:
                sub_headers[k] = outer_headers[k]
        entry = {"t": time.time(), "method": r["method"].upper(), "path": url, "status": None,
                 "app": principal["app"], "kind": "batch_item", "cost": 0, "retry_after": None, "request_id": rid,
                 "client_request_id": octx["crid"], "throttled": False, "fault": None,
                 "priority": sub_headers.get("x-ms-throttle-priority"), "batch_request_id": octx["rid"]}
        ctx = {"rid": rid, "crid": octx["crid"], "base": octx["base"], "headers": sub_headers, "entry": entry}
        parts = urlsplit(url)
        try:
            if parts.scheme or parts.netloc:
                raise GraphError(400, "BadRequest", "Invalid request URL: a $batch request url must be relative.")
            path = parts.path if parts.path.startswith("/") else "/" + parts.path
            if path.startswith("/v1.0/") or path.startswith("/beta/"):
                raise GraphError(400, "BadRequest", "Invalid request URL: omit the version in a $batch request url.")
            ctx["item_path"] = "/%s%s" % (version, path)
            f = self._fault_for("graph", ctx["item_path"], entry["method"])
            if f:
                rep = self._apply_fault(f, ctx)
                if rep is not None:
                    raise GraphError(rep.status, rep.body["error"]["code"], rep.body["error"]["message"], rep.headers)
            sub_body = r.get("body")
            sub_body = json.dumps(sub_body).encode() if sub_body is not None else b""
            if sub_body and "content-type" not in sub_headers:
                sub_headers["content-type"] = "application/json"
            reply = self._graph_one(entry["method"], version, path[1:], parts.query, sub_headers, principal, ctx,
                                    sub_body)
        except GraphError as e:
            reply = self.error_reply(e.status, e.code, e.message, ctx, e.headers)
        except QueryError as e:
            reply = self.error_reply(e.status, e.code, e.message, ctx)
        h = dict(reply.headers)
        h.setdefault("request-id", rid)
        h.setdefault("client-request-id", octx["crid"])
        entry["status"] = reply.status
        entry["t_end"] = time.time()
        self._record(entry)
        item = {"id": r["id"], "status": reply.status, "headers": h}
        if reply.raw is not None:
            item["body"] = reply.raw.decode("utf-8")
        else:
            item["body"] = reply.body
        return item


# ---------------------------------------------------------------------------------------------
# Admin API (Python methods; the same under /_emulator/ over HTTP)
# ---------------------------------------------------------------------------------------------

class Admin(object):
    """Test controls. Not Graph traffic: no token, not throttled, not in the request log."""

    def __init__(self, emu):
        self.emu = emu

    # faults and timing
    def add_fault(self, status=429, rate=1.0, count=None, retry_after=None, retry_after_format="seconds",
                  match=None, methods=None, target="graph", latency=0.0, duration=None):
        """Inject a fault: ``status`` (429/503/504/... or None for latency only) on requests whose path
        contains ``match``, with probability ``rate``, ``count`` times (None: until cleared).
        ``retry_after``: seconds (int or fractional) or, with retry_after_format="http-date", the HTTP-date
        that many seconds ahead; None: no Retry-After header. ``target``: graph | token | imds | all.
        ``duration``: seconds from now during which the fault applies (an outage of that length), after
        which it no longer matches; None: no time limit."""
        emu = self.emu
        with emu._lock:
            emu._fault_ids += 1
            f = {"id": emu._fault_ids, "status": status, "rate": float(rate), "count": count,
                 "retry_after": retry_after, "retry_after_format": retry_after_format, "match": match,
                 "methods": [m.upper() for m in methods] if methods else None, "target": target,
                 "latency": float(latency or 0), "hits": 0,
                 "until": time.time() + float(duration) if duration is not None else None}
            emu.faults.append(f)
        return f["id"]

    def clear_faults(self):
        with self.emu._lock:
            self.emu.faults = []

    def faults(self):
        with self.emu._lock:
            return [dict(f) for f in self.emu.faults]

    def set_latency(self, seconds):
        self.emu.settings["latency"] = float(seconds)

    def expire_tokens(self):
        """Every access token issued so far is expired from now on (token expiry mid-run)."""
        self.emu.tokens_invalid_before = time.time() + 1e-6
        time.sleep(0.002)

    def set_token_lifetime(self, seconds):
        self.emu.settings["token_lifetime"] = int(seconds)

    def expire_delta_tokens(self):
        """Every deltaLink/nextLink of /groups/delta issued so far answers 400 syncStateNotFound."""
        self.emu.delta_expired_before = time.time() + 1e-6
        time.sleep(0.002)

    def reset_delta_tokens(self):
        """Every deltaLink/nextLink issued so far answers 410 Gone with a Location to start again."""
        self.emu.delta_reset_before = time.time() + 1e-6
        time.sleep(0.002)

    def set_throttle(self, enabled=None, scale=None, limit=None, window=None, retry_after_format=None, reset=True):
        s = self.emu.settings
        if enabled is not None:
            s["throttle_enabled"] = bool(enabled)
        if scale is not None:
            s["throttle_scale"] = float(scale)
        if limit is not None:
            s["throttle_limit"] = float(limit) if limit else None
        if window is not None:
            s["throttle_window"] = float(window)
        if retry_after_format is not None:
            s["retry_after_format"] = retry_after_format
        if reset:
            with self.emu._lock:
                self.emu.buckets = {}

    def update_settings(self, **kw):
        unknown = set(kw) - set(DEFAULT_SETTINGS)
        if unknown:
            raise ValueError("unknown settings: %s" % ", ".join(sorted(unknown)))
        self.emu.settings.update(kw)

    # request log
    def requests(self, since=0, kind=None):
        """Logged requests (dicts: n, t, t_end, method, path, status, app, kind, cost, retry_after,
        request_id, client_request_id, throttled, fault, priority), from index ``since``."""
        with self.emu._lock:
            out = self.emu.log[max(0, since - self.emu._log_base):]
            return [dict(e) for e in out if kind is None or e["kind"] == kind]

    def retry_delays(self, statuses=(429, 503, 504)):
        """How clients honoured Retry-After: for each logged response with one of ``statuses``
        that was retried (a later request of the same app, method and path; batch items by
        their own url), a dict ``{path, status, retry_after, delay, n, retry_n}`` where ``delay``
        is the seconds from the end of the refused response to the start of the retry.
        ``retry_after`` is the header as sent (None when there was none)."""
        with self.emu._lock:
            log = list(self.emu.log)
        pending = {}
        out = []
        for e in log:
            if e["kind"] not in ("graph", "batch_item", "token", "imds"):
                continue
            key = (e["app"], e["method"], e["path"])
            prev = pending.pop(key, None)
            if prev is not None:
                out.append({"path": prev["path"], "status": prev["status"], "retry_after": prev["retry_after"],
                            "delay": e["t"] - prev["t_end"], "n": prev["n"], "retry_n": e["n"]})
            if e["status"] in statuses:
                pending[key] = e
        return out

    def clear_log(self):
        with self.emu._lock:
            self.emu._log_base += len(self.emu.log)
            self.emu.log = []
            self.emu.counters = {"requests": 0, "by_status": {}, "by_kind": {}, "throttled": 0, "faults": 0,
                                 "tokens_issued": 0, "emulator_errors": 0}

    def counters(self):
        with self.emu._lock:
            c = json.loads(json.dumps(self.emu.counters))
        return c

    # state
    def create_group(self, members=None, **props):
        obj = self.emu.tenant.create_group(props)
        if members:
            self.emu.tenant.add_members(obj["id"], members)
        return _public(obj)

    def update_group(self, group_id, **props):
        return _public(self.emu.tenant.update_group(group_id, props))

    def delete_group(self, group_id):
        return _public(self.emu.tenant.delete_object(group_id))

    def convert_group_to_cloud(self, group_id, cloud_managed=True):
        """Group source of authority (SOA): what ``PATCH /beta/groups/{id}/onPremisesSyncBehavior
        {"isCloudManaged": true}`` does to an AD-synced group. As documented ("Status of attributes
        after SOA switch", https://learn.microsoft.com/en-us/entra/identity/hybrid/how-to-group-source-of-authority-configure):
        isCloudManaged becomes true and dirSyncEnabled (onPremisesSyncEnabled) null; a rollback
        (``cloud_managed=False``) sets isCloudManaged false and leaves onPremisesSyncEnabled null until
        the sync client takes the group over again. The on-premises identifiers
        (onPremisesSecurityIdentifier, onPremisesSamAccountName, onPremisesDomainName, ...) stay: "The
        SID value provides this tie together" (https://learn.microsoft.com/en-us/entra/identity/hybrid/
        concept-group-source-of-authority-how-it-works)."""
        tenant = self.emu.tenant
        with tenant.lock:
            obj = tenant.get(group_id, "group")
            if obj is None:
                raise KeyError(group_id)
            if cloud_managed and not (obj.get("onPremisesSyncEnabled") or obj.get("onPremisesSecurityIdentifier")):
                raise ValueError("group %s was never synced from AD: nothing to convert" % group_id)
            obj["onPremisesSyncBehavior"] = {"isCloudManaged": bool(cloud_managed)}
            return _public(tenant.update_group(group_id, {"onPremisesSyncEnabled": None}))

    def delete_object(self, object_id):
        return _public(self.emu.tenant.delete_object(object_id))

    def add_members(self, group_id, member_ids):
        return self.emu.tenant.add_members(group_id, list(member_ids))

    def remove_members(self, group_id, member_ids):
        return self.emu.tenant.remove_members(group_id, list(member_ids))

    def create_user(self, **props):
        return _public(self.emu.tenant.create_object("user", props))

    def create_object(self, type_name, **props):
        return _public(self.emu.tenant.create_object(type_name, props))

    def update_object(self, object_id, **props):
        return _public(self.emu.tenant.update_object(object_id, props))

    def get_object(self, object_id):
        o = self.emu.tenant.get(object_id)
        return _public(o) if o else None

    def members_of(self, group_id):
        return list(self.emu.tenant.member_ids(group_id.lower()))

    def export_tenant(self):
        return self.emu.tenant.export()

    # HTTP form
    def http(self, method, path, query, body):
        segs = [s for s in path.split("/") if s][1:]
        try:
            data = json.loads(body.decode("utf-8")) if body else {}
        except ValueError:
            return Reply(400, {"error": "invalid JSON"})
        q = dict(parse_qsl(query or ""))
        try:
            res = self._http_dispatch(method, segs, q, data)
        except KeyError as e:
            return Reply(404, {"error": "not found: %s" % (e,)})
        except (ValueError, TypeError) as e:
            return Reply(400, {"error": str(e)})
        if isinstance(res, Reply):
            return res
        return Reply(200, res if res is not None else {"ok": True}, {"Content-Type": "application/json"})

    def _http_dispatch(self, m, segs, q, data):
        route = "/".join(segs)
        if m == "GET" and route == "info":
            return self.emu.info()
        if m == "GET" and route == "log":
            return {"value": self.requests(int(q.get("since", 0)), q.get("kind"))}
        if m == "DELETE" and route == "log":
            return self.clear_log()
        if m == "GET" and route == "counters":
            return self.counters()
        if m == "GET" and route == "retries":
            return {"value": self.retry_delays()}
        if route == "faults":
            if m == "POST":
                return {"id": self.add_fault(**data)}
            if m == "DELETE":
                return self.clear_faults()
            if m == "GET":
                return {"value": self.faults()}
        if m == "POST" and route == "latency":
            return self.set_latency(data.get("seconds", 0))
        if m == "POST" and route == "tokens/expire":
            return self.expire_tokens()
        if m == "POST" and route == "tokens/lifetime":
            return self.set_token_lifetime(data["seconds"])
        if m == "POST" and route == "delta/expire":
            return self.expire_delta_tokens()
        if m == "POST" and route == "delta/reset":
            return self.reset_delta_tokens()
        if m == "POST" and route == "throttle":
            return self.set_throttle(**data)
        if m == "POST" and route == "settings":
            return self.update_settings(**data)
        if m == "GET" and route == "tenant":
            return self.export_tenant()
        if segs[:1] == ["groups"]:
            if m == "POST" and len(segs) == 1:
                return self.create_group(**data)
            if len(segs) == 3 and segs[2] == "onPremisesSyncBehavior" and m == "PATCH":
                return self.convert_group_to_cloud(segs[1], data.get("isCloudManaged", True))
            if len(segs) == 2:
                if m == "PATCH":
                    return self.update_group(segs[1], **data)
                if m == "DELETE":
                    return self.delete_group(segs[1])
                if m == "GET":
                    o = self.get_object(segs[1])
                    if o is None:
                        raise KeyError(segs[1])
                    return o
            if len(segs) == 3 and segs[2] == "members":
                if m == "POST":
                    return {"added": self.add_members(segs[1], data["ids"])}
                if m == "DELETE":
                    return {"removed": self.remove_members(segs[1], data["ids"])}
                if m == "GET":
                    return {"value": self.members_of(segs[1])}
            if len(segs) == 4 and segs[2] == "members" and m == "DELETE":
                return {"removed": self.remove_members(segs[1], [segs[3]])}
        if segs[:1] == ["users"] and m == "POST" and len(segs) == 1:
            return self.create_user(**data)
        if segs[:1] == ["objects"]:
            if m == "POST" and len(segs) == 2:
                return self.create_object(segs[1], **data)
            if len(segs) == 2 and m == "PATCH":
                return self.update_object(segs[1], **data)
            if len(segs) == 2 and m == "DELETE":
                return self.delete_object(segs[1])
            if len(segs) == 2 and m == "GET":
                o = self.get_object(segs[1])
                if o is None:
                    raise KeyError(segs[1])
                return o
        return Reply(404, {"error": "no such admin endpoint: %s %s" % (m, route)})


def _public(obj):
    return {k: v for k, v in obj.items() if not k.startswith("_")}


class RemoteAdmin(object):
    """The Admin interface over HTTP, for an emulator running in another process."""

    def __init__(self, base_url, ca_file):
        import requests
        self.url = base_url.rstrip("/") + "/_emulator"
        self.s = requests.Session()
        self.s.verify = ca_file
        self.s.trust_env = False  # REQUESTS_CA_BUNDLE would override verify

    def _call(self, method, route, body=None, params=None):
        r = self.s.request(method, "%s/%s" % (self.url, route), json=body, params=params)
        if r.status_code >= 400:
            raise RuntimeError("admin %s %s: %s %s" % (method, route, r.status_code, r.text))
        return r.json()

    def add_fault(self, **kw):
        return self._call("POST", "faults", kw)["id"]

    def clear_faults(self):
        self._call("DELETE", "faults")

    def set_latency(self, seconds):
        self._call("POST", "latency", {"seconds": seconds})

    def expire_tokens(self):
        self._call("POST", "tokens/expire")

    def set_token_lifetime(self, seconds):
        self._call("POST", "tokens/lifetime", {"seconds": seconds})

    def expire_delta_tokens(self):
        self._call("POST", "delta/expire")

    def reset_delta_tokens(self):
        self._call("POST", "delta/reset")

    def set_throttle(self, **kw):
        self._call("POST", "throttle", kw)

    def update_settings(self, **kw):
        self._call("POST", "settings", kw)

    def requests(self, since=0, kind=None):
        p = {"since": since}
        if kind:
            p["kind"] = kind
        return self._call("GET", "log", params=p)["value"]

    def clear_log(self):
        self._call("DELETE", "log")

    def retry_delays(self):
        return self._call("GET", "retries")["value"]

    def counters(self):
        return self._call("GET", "counters")

    def create_group(self, **props):
        return self._call("POST", "groups", props)

    def update_group(self, group_id, **props):
        return self._call("PATCH", "groups/" + group_id, props)

    def delete_group(self, group_id):
        return self._call("DELETE", "groups/" + group_id)

    def convert_group_to_cloud(self, group_id, cloud_managed=True):
        return self._call("PATCH", "groups/%s/onPremisesSyncBehavior" % group_id, {"isCloudManaged": cloud_managed})

    def add_members(self, group_id, member_ids):
        return self._call("POST", "groups/%s/members" % group_id, {"ids": list(member_ids)})["added"]

    def remove_members(self, group_id, member_ids):
        return self._call("DELETE", "groups/%s/members" % group_id, {"ids": list(member_ids)})["removed"]

    def create_user(self, **props):
        return self._call("POST", "users", props)

    def create_object(self, type_name, **props):
        return self._call("POST", "objects/" + type_name, props)

    def update_object(self, object_id, **props):
        return self._call("PATCH", "objects/" + object_id, props)

    def delete_object(self, object_id):
        return self._call("DELETE", "objects/" + object_id)

    def members_of(self, group_id):
        return self._call("GET", "groups/%s/members" % group_id)["value"]

    def export_tenant(self):
        return self._call("GET", "tenant")


# ---------------------------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr, handler, emu, ssl_ctx):
        self.emu = emu
        self.ssl_ctx = ssl_ctx
        ThreadingHTTPServer.__init__(self, addr, handler)

    def finish_request(self, request, client_address):
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        if self.ssl_ctx is not None:
            request.settimeout(30)
            try:
                request = self.ssl_ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                try:
                    request.close()
                except OSError:
                    pass
                return
        with self.emu._lock:
            self.emu._conns.add(request)
        try:
            self.RequestHandlerClass(request, client_address, self)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self.emu._lock:
                self.emu._conns.discard(request)
            try:
                request.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):  # pragma: no cover - quiet on client resets
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "graph-emulator/1.0"
    sys_version = ""
    timeout = 120

    def log_message(self, fmt, *args):
        pass

    def version_string(self):
        return "Microsoft-IIS/10.0"

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if te == "chunked":
            chunks = []
            while True:
                line = self.rfile.readline()
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(n))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _do(self):
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        emu = self.server.emu
        reply = emu.handle(self.command, self.path, headers, body, self.server.ssl_ctx is not None)
        if reply.raw is not None:
            data = reply.raw
        elif reply.body is not None:
            data = _dumps(reply.body)
        else:
            data = b""
        self.send_response(reply.status)
        for k, v in reply.headers.items():
            self.send_header(k, v)
        if "Content-Type" not in reply.headers and data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if (headers.get("connection") or "").lower() == "close":
            self.close_connection = True
        if self.command != "HEAD":
            # one write for status line, headers and body (no Nagle/delayed-ACK stall)
            self._headers_buffer.append(b"\r\n" + data)
            self.flush_headers()
        else:
            self.end_headers()

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = do_HEAD = _do


def start_emulator(tenant=None, port=0, **kw):
    """Start an emulator in this process (background threads). ``tenant``: a tenant dict or a path
    to a tenant JSON file; None: the small built-in tenant of fixtures.py."""
    if tenant is None:
        from emulator.fixtures import small_tenant, start_with_credentials
        return start_with_credentials(small_tenant(), port=port, **kw)
    return Emulator(tenant, port=port, **kw).start()


def _parse_generate(spec):
    kw = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        k, unused, v = part.partition("=")
        k = k.strip()
        kw[{"big": "big_group_members", "depth": "nesting_depth"}.get(k, k)] = int(v)
    return kw


def main(argv=None):
    ap = argparse.ArgumentParser(description="Microsoft Graph emulator (test fixture)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--tenant", help="tenant JSON file (see tests/emulator/README.md)")
    src.add_argument("--generate", help="generate a tenant: groups=N,users=M,memberships=K,big=B,depth=D,seed=S")
    ap.add_argument("--identities", help="JSON file: list of the lab's AD users (object_guid, object_sid, immutable_id, "
                                         "user_principal_name, sam_account_name, domain, dn) for --generate")
    ap.add_argument("--standard-apps", action="store_true",
                    help="with --generate: the fixed tenant id and apps of fixtures.py (client id/secret/certificate)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--imds-port", type=int, default=0)
    ap.add_argument("--state-file", help="write the URLs/CA/tenant id (JSON) here once listening")
    ap.add_argument("--save-tenant", help="write the (generated) tenant JSON here")
    ap.add_argument("--lab-dir")
    ap.add_argument("--no-throttle", action="store_true")
    ap.add_argument("--throttle-scale", type=float)
    ap.add_argument("--throttle-limit", type=float)
    ap.add_argument("--token-lifetime", type=int)
    args = ap.parse_args(argv)
    if args.tenant:
        with open(args.tenant) as fh:
            tenant = json.load(fh)
    else:
        from emulator.generate import generate_tenant
        gen_kw = _parse_generate(args.generate)
        if args.identities:
            with open(args.identities) as fh:
                gen_kw["identities"] = json.load(fh)
        if args.standard_apps:
            from emulator.fixtures import build_tenant
            tenant = build_tenant(**gen_kw)
        else:
            tenant = generate_tenant(**gen_kw) if (args.generate or args.identities) else None
        if tenant is None:
            from emulator.fixtures import small_tenant
            tenant = small_tenant()
    if args.save_tenant:
        with open(args.save_tenant, "w") as fh:
            json.dump(tenant, fh)
    settings = {}
    if args.no_throttle:
        settings["throttle_enabled"] = False
    if args.throttle_scale is not None:
        settings["throttle_scale"] = args.throttle_scale
    if args.throttle_limit is not None:
        settings["throttle_limit"] = args.throttle_limit
    if args.token_lifetime is not None:
        settings["token_lifetime"] = args.token_lifetime
    emu = Emulator(tenant, host=args.host, port=args.port, lab_dir=args.lab_dir, imds_port=args.imds_port,
                   settings=settings).start()
    info = emu.info()
    if args.state_file:
        tmp = args.state_file + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(info, fh, indent=1)
        os.replace(tmp, args.state_file)
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
    stop = threading.Event()
    import signal
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    emu.stop()


if __name__ == "__main__":
    main()
