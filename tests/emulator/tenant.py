"""State of one emulated Entra tenant: directory objects, memberships, the delta change log.

Everything is indexed in dicts so a tenant of 20,000 users / 200,000 memberships / one group
of 50,000+ members is served without O(n^2) work:

* ``objects``: id -> object dict (Graph camelCase properties, plus the internal key ``_t``:
  "user" | "group" | "device" | "orgContact" | "servicePrincipal").
* ``members``: group id -> dict(member id -> None), insertion ordered (the member order).
* ``member_of``: member id -> set(group ids) (reverse index, for deletes and memberOf).
* ``changes``: the delta change log, ``(seq, kind, group id, payload)`` with a strictly
  increasing sequence number; a deltaLink holds the sequence number it was issued at and
  returns exactly the changes after it.

This module knows nothing of HTTP; ``server.py`` frames what it returns.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import bisect
import collections
import copy
import re
import threading
import uuid

# ---------------------------------------------------------------------------------------------
# Types and their properties (Graph v1.0; beta adds a few)
# ---------------------------------------------------------------------------------------------

ODATA_TYPES = {
    "user": "#microsoft.graph.user",
    "group": "#microsoft.graph.group",
    "device": "#microsoft.graph.device",
    "orgContact": "#microsoft.graph.orgContact",
    "servicePrincipal": "#microsoft.graph.servicePrincipal",
}
CAST_SEGMENTS = {"microsoft.graph." + t: t for t in ODATA_TYPES}

USER_DEFAULT = ("businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
                "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id")
USER_PROPS = set(USER_DEFAULT) | {
    "accountEnabled", "ageGroup", "assignedLicenses", "assignedPlans", "city", "companyName",
    "consentProvidedForMinor", "country", "createdDateTime", "creationType", "deletedDateTime",
    "department", "employeeHireDate", "employeeId", "employeeType", "externalUserState",
    "faxNumber", "identities", "imAddresses", "isResourceAccount", "lastPasswordChangeDateTime",
    "legalAgeGroupClassification", "mailNickname", "onPremisesDistinguishedName",
    "onPremisesDomainName", "onPremisesExtensionAttributes", "onPremisesImmutableId",
    "onPremisesLastSyncDateTime", "onPremisesProvisioningErrors", "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier", "onPremisesSyncEnabled", "onPremisesUserPrincipalName",
    "otherMails", "passwordPolicies", "postalCode", "preferredDataLocation", "proxyAddresses",
    "securityIdentifier", "showInAddressList", "signInSessionsValidFromDateTime", "state",
    "streetAddress", "usageLocation", "userType",
}
USER_PROPS_BETA = USER_PROPS | {"onPremisesObjectIdentifier", "onPremisesSipInfo"}

GROUP_DEFAULT = (
    "id", "deletedDateTime", "classification", "createdDateTime", "creationOptions", "description",
    "displayName", "expirationDateTime", "groupTypes", "isAssignableToRole", "mail", "mailEnabled",
    "mailNickname", "membershipRule", "membershipRuleProcessingState", "onPremisesDomainName",
    "onPremisesLastSyncDateTime", "onPremisesNetBiosName", "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier", "onPremisesSyncEnabled", "preferredDataLocation",
    "preferredLanguage", "proxyAddresses", "renewedDateTime", "resourceBehaviorOptions",
    "resourceProvisioningOptions", "securityEnabled", "securityIdentifier", "theme", "visibility",
    "onPremisesProvisioningErrors", "serviceProvisioningErrors")
GROUP_PROPS = set(GROUP_DEFAULT) | {
    "allowExternalSenders", "assignedLabels", "assignedLicenses", "autoSubscribeNewMembers",
    "hasMembersWithLicenseErrors", "hideFromAddressLists", "hideFromOutlookClients",
    "isSubscribedByMail", "licenseProcessingState", "unseenCount", "uniqueName",
}
GROUP_PROPS_BETA = GROUP_PROPS | {"onPremisesGroupType", "writebackConfiguration", "organizationId"}

DEVICE_DEFAULT = (
    "id", "accountEnabled", "approximateLastSignInDateTime", "complianceExpirationDateTime",
    "createdDateTime", "deletedDateTime", "deviceId", "deviceMetadata", "deviceVersion",
    "displayName", "isCompliant", "isManaged", "manufacturer", "mdmAppId", "model",
    "onPremisesLastSyncDateTime", "onPremisesSecurityIdentifier", "onPremisesSyncEnabled",
    "operatingSystem", "operatingSystemVersion", "physicalIds", "profileType",
    "registrationDateTime", "systemLabels", "trustType")
DEVICE_PROPS = set(DEVICE_DEFAULT) | {"alternativeSecurityIds", "extensionAttributes"}

CONTACT_DEFAULT = (
    "id", "addresses", "companyName", "deletedDateTime", "department", "displayName", "givenName",
    "jobTitle", "mail", "mailNickname", "onPremisesLastSyncDateTime",
    "onPremisesProvisioningErrors", "onPremisesSyncEnabled", "phones", "proxyAddresses", "surname")
CONTACT_PROPS = set(CONTACT_DEFAULT) | {"imAddresses", "serviceProvisioningErrors"}

SP_DEFAULT = (
    "id", "accountEnabled", "appDisplayName", "appId", "appOwnerOrganizationId",
    "appRoleAssignmentRequired", "appRoles", "createdDateTime", "deletedDateTime", "description",
    "displayName", "homepage", "servicePrincipalNames", "servicePrincipalType", "signInAudience",
    "tags", "keyCredentials", "passwordCredentials", "oauth2PermissionScopes", "replyUrls", "notes")
SP_PROPS = set(SP_DEFAULT) | {"alternativeNames", "appRoleAssignedTo", "loginUrl", "logoutUrl"}

DEFAULTS = {"user": USER_DEFAULT, "group": GROUP_DEFAULT, "device": DEVICE_DEFAULT,
            "orgContact": CONTACT_DEFAULT, "servicePrincipal": SP_DEFAULT}
# Property names by (type, version)
_PROPS = {
    ("user", "v1.0"): USER_PROPS, ("user", "beta"): USER_PROPS_BETA,
    ("group", "v1.0"): GROUP_PROPS, ("group", "beta"): GROUP_PROPS_BETA,
    ("device", "v1.0"): DEVICE_PROPS, ("device", "beta"): DEVICE_PROPS,
    ("orgContact", "v1.0"): CONTACT_PROPS, ("orgContact", "beta"): CONTACT_PROPS,
    ("servicePrincipal", "v1.0"): SP_PROPS, ("servicePrincipal", "beta"): SP_PROPS,
}
# Collection-valued properties: an unset one renders as [] rather than null.
COLLECTION_PROPS = {
    "businessPhones", "groupTypes", "proxyAddresses", "otherMails", "imAddresses", "identities",
    "assignedLicenses", "assignedPlans", "creationOptions", "resourceBehaviorOptions",
    "resourceProvisioningOptions", "onPremisesProvisioningErrors", "serviceProvisioningErrors",
    "physicalIds", "systemLabels", "alternativeSecurityIds", "addresses", "phones", "appRoles",
    "servicePrincipalNames", "tags", "keyCredentials", "passwordCredentials",
    "oauth2PermissionScopes", "replyUrls", "alternativeNames", "assignedLabels",
}


def props_of(type_name, version):
    return _PROPS[(type_name, version)]


def new_id():
    return str(uuid.uuid4())


class QueryError(Exception):
    """A client error in a query: becomes a 400 with this code and message."""

    def __init__(self, code, message, status=400):
        super(QueryError, self).__init__(message)
        self.code = code
        self.message = message
        self.status = status


def select_error(prop, type_name):
    return QueryError("Request_BadRequest",
                      "Could not find a property named '%s' on type 'microsoft.graph.%s'." % (prop, type_name))


def parse_select(raw, type_names, version, extra=()):
    """$select value -> tuple of property names, validated against the type(s).

    For one type a property it lacks is a 400. For a directoryObject collection (several
    types) a property must exist on at least one of them.
    """
    if raw is None:
        return None
    names = [p.strip() for p in raw.split(",")]
    if not names or any(not p for p in names):
        raise QueryError("Request_BadRequest", "Invalid $select value '%s'." % raw)
    out = []
    for p in names:
        if p in extra:
            out.append(p)
            continue
        if not any(p in props_of(t, version) for t in type_names):
            raise select_error(p, type_names[0] if len(type_names) == 1 else "directoryObject")
        if p not in out:
            out.append(p)
    return tuple(out)


def render(obj, select, version, with_type=False, limited=False):
    """One object as Graph returns it: the selected properties (unset -> null), or the default set."""
    t = obj["_t"]
    out = {}
    if with_type:
        out["@odata.type"] = ODATA_TYPES[t]
    if limited:
        # The app may not read this type: Graph returns the object with minimal information.
        out["id"] = obj["id"]
        return out
    if select is None:
        names = DEFAULTS[t]
    else:
        allowed = props_of(t, version)
        names = [p for p in select if p in allowed]
        if "id" not in names:
            names = ["id"] + names
    for p in names:
        v = obj.get(p)
        if v is None and p in COLLECTION_PROPS:
            v = []
        out[p] = v
    return out


# ---------------------------------------------------------------------------------------------
# $filter: a small OData parser with the support table of Entra ID
# ---------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<punct>[(),:])"
                       r"|(?P<ident>[A-Za-z_$][A-Za-z0-9_./$-]*))")

# Per type: property -> kind ("str", "bool", "coll" for any(), "id"). The properties and operators
# each resource page lists as supporting $filter (https://learn.microsoft.com/en-us/graph/api/resources/group,
# .../resources/user), and those that need advanced query
# (https://learn.microsoft.com/en-us/graph/aad-advanced-queries): ne, not, endsWith, eq null,
# $filter on relationships, $orderby with $filter, $count.
FILTERABLE = {
    "group": {"id": "id", "displayName": "str", "description": "str", "mail": "str",
              "mailNickname": "str", "securityEnabled": "bool", "mailEnabled": "bool",
              "onPremisesSyncEnabled": "bool", "isAssignableToRole": "bool",
              "groupTypes": "coll", "proxyAddresses": "coll",
              "onPremisesSecurityIdentifier": "str", "securityIdentifier": "str",
              "membershipRuleProcessingState": "str", "onPremisesSamAccountName": "str"},
    "user": {"id": "id", "displayName": "str", "userPrincipalName": "str", "mail": "str",
             "mailNickname": "str", "givenName": "str", "surname": "str", "accountEnabled": "bool",
             "userType": "str", "onPremisesImmutableId": "str", "onPremisesSyncEnabled": "bool",
             "onPremisesSamAccountName": "str", "onPremisesSecurityIdentifier": "str",
             "employeeId": "str", "otherMails": "coll", "proxyAddresses": "coll",
             "onPremisesUserPrincipalName": "str"},
    "device": {"id": "id", "displayName": "str", "deviceId": "str", "accountEnabled": "bool",
               "operatingSystem": "str", "trustType": "str"},
    "orgContact": {"id": "id", "displayName": "str", "mail": "str"},
    "servicePrincipal": {"id": "id", "displayName": "str", "appId": "str",
                         "servicePrincipalType": "str", "accountEnabled": "bool"},
}
# Properties only the beta endpoint can filter on (they exist on beta only):
# https://learn.microsoft.com/en-us/graph/api/resources/groupwritebackconfiguration?view=graph-rest-beta
FILTERABLE_BETA = {"group": {"writebackConfiguration/isEnabled": "bool"}}

# Query limits without advanced query (Graph "known issues", "Some limitations apply to query
# parameters": https://learn.microsoft.com/en-us/graph/known-issues#some-limitations-apply-to-query-parameters):
# * "When using the in operator, the request is limited to 15 expressions in the filter clause by
#   default OR a URL length of 2,048 characters when using advanced query capabilities." Every
#   value inside in (...) and every other comparison of the clause counts; Graph's answer is
#   400 Request_UnsupportedQuery "Too many child clauses specified in search filter expression
#   containing 'OR' operators: N. Max allowed: 15." (the count applies to or-ed clauses too).
# * "When filtering using the eq operator, the maximum limit of the value to match is 120
#   characters ... When using advanced queries, the limit is applied on the URL length at 2,048
#   characters instead of the matched value." (applied to in (...) values too: in is a list of eq)
MAX_FILTER_EXPRESSIONS = 15
MAX_EQ_VALUE_CHARS = 120
MAX_ADVANCED_URL_CHARS = 2048

# (type, property) whose filters need the advanced query capabilities even with eq
ADVANCED_ONLY = {("user", "onPremisesSyncEnabled"), ("user", "onPremisesSamAccountName"),
                 ("group", "onPremisesSamAccountName"), ("user", "employeeId")}

_RESOURCE_NAMES = {"group": "Group", "user": "User", "device": "Device", "orgContact": "OrgContact",
                   "servicePrincipal": "ServicePrincipal"}


def _unsupported(prop, type_name):
    return QueryError("Request_UnsupportedQuery",
                      "Unsupported or invalid query filter clause specified for property '%s' of resource '%s'."
                      % (prop, _RESOURCE_NAMES.get(type_name, type_name)))


def _bad_filter(text):
    return QueryError("Request_BadRequest", "Invalid filter clause: %s" % text)


class _Parser(object):
    def __init__(self, text):
        self.text = text
        self.toks = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _TOKEN_RE.match(text, pos)
            if not m or m.end() == pos:
                raise _bad_filter("syntax error at position %d in '%s'." % (pos, self.text))
            pos = m.end()
            kind = m.lastgroup
            val = m.group(kind)
            if kind == "str":
                val = val[1:-1].replace("''", "'")
            elif kind == "num":
                val = float(val) if "." in val else int(val)
            self.toks.append((kind, val))
        self.i = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self, kind=None, val=None):
        tok = self.peek()
        if tok[0] is None or (kind and tok[0] != kind) or (val is not None and str(tok[1]).lower() != val):
            raise _bad_filter("syntax error at token %d in '%s'." % (self.i, self.text))
        self.i += 1
        return tok

    def kw(self, word):
        tok = self.peek()
        return tok[0] == "ident" and tok[1].lower() == word

    def parse(self):
        node = self.expr_or()
        if self.i != len(self.toks):
            raise _bad_filter("syntax error at token %d in '%s'." % (self.i, self.text))
        return node

    def expr_or(self):
        node = self.expr_and()
        while self.kw("or"):
            self.i += 1
            node = ("or", node, self.expr_and())
        return node

    def expr_and(self):
        node = self.expr_not()
        while self.kw("and"):
            self.i += 1
            node = ("and", node, self.expr_not())
        return node

    def expr_not(self):
        if self.kw("not"):
            self.i += 1
            return ("not", self.expr_not())
        return self.primary()

    def literal(self):
        kind, val = self.take()
        if kind == "str" or kind == "num":
            return val
        if kind == "ident":
            low = val.lower()
            if low in ("true", "false"):
                return low == "true"
            if low == "null":
                return None
        raise _bad_filter("a literal was expected in '%s'." % self.text)

    def primary(self):
        kind, val = self.peek()
        if kind == "punct" and val == "(":
            self.i += 1
            node = self.expr_or()
            self.take("punct", ")")
            return node
        kind, val = self.take("ident")
        low = val.lower()
        if low in ("startswith", "endswith") and self.peek() == ("punct", "("):
            self.take("punct", "(")
            prop = self.take("ident")[1]
            self.take("punct", ",")
            lit = self.literal()
            self.take("punct", ")")
            node = ("func", low, prop, lit)
            return self._maybe_cmp_bool(node)
        if low.endswith("/any") or low.endswith("/all"):
            prop, fn = val.rsplit("/", 1)
            self.take("punct", "(")
            var = self.take("ident")[1]
            self.take("punct", ":")
            v2 = self.take("ident")[1]
            op = self.take("ident")[1].lower()
            lit = self.literal()
            self.take("punct", ")")
            if v2 != var or op not in ("eq", "ne") or fn.lower() != "any":
                raise _unsupported(prop, None)
            return ("any", prop, op, lit)
        prop = val
        op = self.take("ident")[1].lower()
        if op == "in":
            self.take("punct", "(")
            vals = [self.literal()]
            while self.peek() == ("punct", ","):
                self.i += 1
                vals.append(self.literal())
            self.take("punct", ")")
            return ("in", prop, vals)
        if op not in ("eq", "ne", "gt", "ge", "lt", "le"):
            raise _bad_filter("unknown operator '%s' in '%s'." % (op, self.text))
        return ("cmp", op, prop, self.literal())

    def _maybe_cmp_bool(self, node):
        # startswith(x,'a') eq true
        if self.kw("eq"):
            self.i += 1
            lit = self.literal()
            return node if lit is True else ("not", node)
        return node


def _check(node, type_name, advanced, props):
    """Validate a parsed filter against the support table; returns the set of ids when the whole
    filter is an ``id eq`` / ``id in`` disjunction (for delta), else None."""
    kind = node[0]
    if kind in ("and", "or"):
        _check(node[1], type_name, advanced, props)
        _check(node[2], type_name, advanced, props)
        return
    if kind == "not":
        if not advanced:
            raise QueryError("Request_UnsupportedQuery",
                             "Operator 'not' is not supported because the required parameters might be missing. "
                             "Try adding $count with a value of true and ConsistencyLevel header with a value of eventual.")
        _check(node[1], type_name, advanced, props)
        return
    if kind == "any":
        prop = node[1]
        if props.get(prop) != "coll":
            raise _unsupported(prop, type_name)
        if node[2] == "ne" and not advanced:
            raise _advanced_needed("ne")
        return
    if kind == "in":
        prop = node[1]
        if props.get(prop) not in ("id", "str"):
            raise _unsupported(prop, type_name)
        return
    if kind == "func":
        prop = node[2]
        if props.get(prop) not in ("str",):
            raise _unsupported(prop, type_name)
        if node[1] == "endswith" and not advanced:
            raise _advanced_needed("endsWith")
        return
    if kind == "cmp":
        op, prop, lit = node[1], node[2], node[3]
        k = props.get(prop)
        if k is None or k == "coll":
            raise _unsupported(prop, type_name)
        if op in ("gt", "ge", "lt", "le"):
            raise _unsupported(prop, type_name)
        if op == "ne" and not advanced:
            raise _advanced_needed("ne")
        if lit is None and not advanced:
            raise _advanced_needed("eq null")
        if (type_name, prop) in ADVANCED_ONLY and not advanced:
            raise _unsupported(prop, type_name)
        if k == "bool" and lit is not None and not isinstance(lit, bool):
            raise _bad_filter("a Boolean literal is expected for '%s'." % prop)
        return
    raise _bad_filter(str(node))


def _advanced_needed(op):
    return QueryError("Request_UnsupportedQuery",
                      "Operator '%s' is not supported because the required parameters might be missing. "
                      "Try adding $count with a value of true and ConsistencyLevel header with a value of eventual." % op)


def _lower(v):
    return v.lower() if isinstance(v, str) else v


def _get_path(obj, prop):
    """``a/b`` navigates a complex property (``writebackConfiguration/isEnabled``)."""
    if "/" not in prop:
        return obj.get(prop)
    v = obj
    for part in prop.split("/"):
        v = v.get(part) if isinstance(v, dict) else None
    return v


def _eval(node, obj):
    kind = node[0]
    if kind == "and":
        return _eval(node[1], obj) and _eval(node[2], obj)
    if kind == "or":
        return _eval(node[1], obj) or _eval(node[2], obj)
    if kind == "not":
        return not _eval(node[1], obj)
    if kind == "any":
        vals = obj.get(node[1]) or []
        lit = _lower(node[3])
        hit = any(_lower(v) == lit for v in vals)
        return hit if node[2] == "eq" else any(_lower(v) != lit for v in vals)
    if kind == "in":
        v = _lower(obj.get(node[1]))
        return any(v == _lower(x) for x in node[2])
    if kind == "func":
        v = obj.get(node[2])
        if not isinstance(v, str) or not isinstance(node[3], str):
            return False
        if node[1] == "startswith":
            return v.lower().startswith(node[3].lower())
        return v.lower().endswith(node[3].lower())
    if kind == "cmp":
        op, prop, lit = node[1], node[2], node[3]
        v = _get_path(obj, prop)
        if prop == "onPremisesSyncEnabled" and v is None and lit is False:
            eq = False
        else:
            eq = _lower(v) == _lower(lit)
        return eq if op == "eq" else not eq
    return False


def count_expressions(node):
    """(expressions, has_or_or_in): every comparison counts 1, every value of in (...) counts 1."""
    kind = node[0]
    if kind in ("and", "or"):
        a, oa = count_expressions(node[1])
        b, ob = count_expressions(node[2])
        return a + b, oa or ob or kind == "or"
    if kind == "not":
        return count_expressions(node[1])
    if kind == "in":
        return len(node[2]), True
    return 1, False


def _long_eq_values(node):
    kind = node[0]
    if kind in ("and", "or"):
        return _long_eq_values(node[1]) + _long_eq_values(node[2])
    if kind == "not":
        return _long_eq_values(node[1])
    vals = []
    if kind == "cmp" and node[1] in ("eq", "ne"):
        vals = [node[3]]
    elif kind == "in":
        vals = node[2]
    elif kind == "any":
        vals = [node[3]]
    return [v for v in vals if isinstance(v, str) and len(v) > MAX_EQ_VALUE_CHARS]


def check_limits(node, advanced):
    """The documented query limits without advanced query (see MAX_FILTER_EXPRESSIONS)."""
    if advanced:
        return  # the URL length is checked by the server (it sees the whole URL)
    n, counted = count_expressions(node)
    if counted and n > MAX_FILTER_EXPRESSIONS:
        raise QueryError("Request_UnsupportedQuery",
                         "Too many child clauses specified in search filter expression containing 'OR' operators: %d. "
                         "Max allowed: %d." % (n, MAX_FILTER_EXPRESSIONS))
    long_values = _long_eq_values(node)
    if long_values:
        raise QueryError("Request_UnsupportedQuery",
                         "The value to match of an eq filter is %d characters; at most %d are supported without the "
                         "advanced query capabilities (ConsistencyLevel: eventual and $count=true)."
                         % (len(long_values[0]), MAX_EQ_VALUE_CHARS))


def parse_filter(text, type_name, advanced, version="v1.0"):
    """$filter -> a predicate over objects; raises QueryError (400) for what Entra refuses."""
    if text is None:
        return None
    if not text.strip():
        raise _bad_filter("empty filter.")
    node = _Parser(text).parse()
    props = FILTERABLE[type_name]
    if version == "beta" and type_name in FILTERABLE_BETA:
        props = dict(props, **FILTERABLE_BETA[type_name])
    _check(node, type_name, advanced, props)
    check_limits(node, advanced)

    def predicate(obj):
        return _eval(node, obj)
    # A filter that holds only for a few ids (``id in (...)``/``id eq`` among its and-ed clauses, as
    # every scope check of a delta run is) is evaluated on those objects alone: the same answer, as
    # a directory with an index on ids finds it, without evaluating it on every group of the tenant
    # (68 such filters over 2,000 groups were 0.2 s of the emulator's CPU per run, on the machine
    # that runs the DC and the module too).
    predicate.ids = _id_constraint(node)
    return predicate


def _id_constraint(node):
    """The lower-case ids an object must have for ``node`` to hold (a set), or None when any id may."""
    kind = node[0]
    if kind == "and":
        a, b = _id_constraint(node[1]), _id_constraint(node[2])
        return b if a is None else a if b is None else a & b
    if kind == "or":
        a, b = _id_constraint(node[1]), _id_constraint(node[2])
        return None if a is None or b is None else a | b
    if kind == "in" and node[1] == "id":
        return set(_lower(v) for v in node[2])
    if kind == "cmp" and node[1] == "eq" and node[2] == "id":
        return {_lower(node[3])}
    return None


def might_match(predicate, obj):
    """False when ``obj`` cannot satisfy ``predicate`` by its id alone (see ``parse_filter``)."""
    ids = getattr(predicate, "ids", None)
    return ids is None or _lower(obj.get("id")) in ids


def parse_id_filter(text, limit=50):
    """The only filter of /groups/delta: ``id eq 'a' or id eq 'b'`` (at most ``limit``)."""
    node = _Parser(text).parse()
    ids = []

    def walk(n):
        if n[0] == "or":
            walk(n[1])
            walk(n[2])
        elif n[0] == "cmp" and n[1] == "eq" and n[2] == "id" and isinstance(n[3], str):
            ids.append(n[3].lower())
        else:
            raise QueryError("Request_UnsupportedQuery",
                             "Unsupported query: /groups/delta supports only $filter=id eq '...' [or id eq '...'].")
    walk(node)
    if len(ids) > limit:
        raise QueryError("Request_UnsupportedQuery",
                         "Too many ids in the delta filter: %d (at most %d)." % (len(ids), limit))
    return set(ids)


# ---------------------------------------------------------------------------------------------
# The tenant
# ---------------------------------------------------------------------------------------------

OBJECT_COLLECTIONS = (("users", "user"), ("groups", "group"), ("devices", "device"),
                      ("org_contacts", "orgContact"), ("service_principals", "servicePrincipal"))


class Tenant(object):
    """One tenant's directory. All public methods take ``self.lock``."""

    def __init__(self, data):
        data = copy.deepcopy(data)
        self.lock = threading.RLock()
        self.tenant_id = data["tenant_id"].lower()
        self.tenant_type = data.get("tenant_type", "AAD")
        self.default_domain = data.get("default_domain", "contoso.onmicrosoft.com")
        self.organization = data.get("organization") or {}
        self.skus = data.get("skus") or []
        self.apps = {a["client_id"].lower(): a for a in data.get("apps") or []}
        self.managed_identities = data.get("managed_identities") or []
        self.explicit_role_assignments = list(data.get("role_assignments") or [])
        self.role_assignments = list(self.explicit_role_assignments)
        for a in list(self.apps.values()) + self.managed_identities:
            for role in a.get("directory_roles") or []:
                self.role_assignments.append({"principalId": a["principal_id"], "roleDefinitionId": role})
        self.settings = data.get("settings") or {}
        self.objects = {}
        self.by_type = {t: {} for t in ODATA_TYPES}   # type -> dict(id -> None), insertion ordered
        self.upn_index = {}
        self.members = {}
        self.member_of = {}
        self.seq = 0
        self.change_seqs = []
        self.changes = []
        for key, t in OBJECT_COLLECTIONS:
            for o in data.get(key) or []:
                self._put(dict(o), t)
        # Each app and managed identity has its service principal (id = principal id, appId = client id).
        for a in list(self.apps.values()) + self.managed_identities:
            pid = (a.get("principal_id") or "").lower()
            if pid and pid not in self.objects:
                self._put({"id": pid, "appId": a.get("client_id"), "accountEnabled": True,
                           "displayName": a.get("display_name") or ("managed identity %s" % a.get("client_id")),
                           "servicePrincipalType": "ManagedIdentity" if "type" in a and a in self.managed_identities
                           else "Application", "appOwnerOrganizationId": self.tenant_id}, "servicePrincipal")
        for gid, mids in (data.get("memberships") or {}).items():
            gid = gid.lower()
            if gid not in self.members:
                raise ValueError("membership of unknown group %s" % gid)
            d = self.members[gid]
            for mid in mids:
                mid = mid.lower()
                if mid not in self.objects:
                    raise ValueError("unknown member %s of group %s" % (mid, gid))
                d[mid] = None
                self.member_of.setdefault(mid, set()).add(gid)

    # -- internals ------------------------------------------------------------------------------
    def _put(self, obj, t):
        obj["id"] = (obj.get("id") or new_id()).lower()
        obj["_t"] = t
        self.objects[obj["id"]] = obj
        self.by_type[t][obj["id"]] = None
        if t == "user" and obj.get("userPrincipalName"):
            self.upn_index[obj["userPrincipalName"].lower()] = obj["id"]
        if t == "group":
            self.members.setdefault(obj["id"], {})
        return obj

    def _log(self, kind, gid, payload=None):
        self.seq += 1
        self.change_seqs.append(self.seq)
        self.changes.append((self.seq, kind, gid, payload))

    # -- reads ----------------------------------------------------------------------------------
    @property
    def user_count(self):
        return len(self.by_type["user"])

    def get(self, oid, type_name=None):
        obj = self.objects.get(oid.lower()) if isinstance(oid, str) else None
        if obj is None and type_name == "user" and isinstance(oid, str):
            uid = self.upn_index.get(oid.lower())
            obj = self.objects.get(uid) if uid else None
        if obj is not None and type_name and obj["_t"] != type_name:
            return None
        return obj

    def ids_of_type(self, t):
        return self.by_type[t]

    def member_ids(self, gid):
        return self.members.get(gid, {})

    def transitive_member_ids(self, gid):
        """Unique transitive members, breadth first; nested groups themselves are included."""
        seen = {gid}
        out = {}
        queue = collections.deque([gid])
        while queue:
            g = queue.popleft()
            for mid in self.members.get(g, ()):
                if mid not in out:
                    out[mid] = None
                if mid in self.members and mid not in seen:
                    seen.add(mid)
                    queue.append(mid)
        out.pop(gid, None)
        return out

    # -- mutations (each one feeds the change log) -----------------------------------------------
    def create_group(self, props):
        with self.lock:
            props = dict(props)
            props.setdefault("groupTypes", [])
            props.setdefault("securityEnabled", True)
            props.setdefault("mailEnabled", False)
            props.setdefault("createdDateTime", "2026-01-01T00:00:00Z")
            if props.get("id") and props["id"].lower() in self.objects:
                raise ValueError("object %s exists" % props["id"])
            obj = self._put(props, "group")
            self._log("group_created", obj["id"])
            return obj

    def update_group(self, gid, props):
        with self.lock:
            obj = self.get(gid, "group")
            if obj is None:
                raise KeyError(gid)
            changed = set()
            for k, v in props.items():
                if k in ("id", "_t"):
                    continue
                if obj.get(k) != v:
                    obj[k] = v
                    changed.add(k)
            if changed:
                self._log("group_updated", obj["id"], frozenset(changed))
            return obj

    def delete_object(self, oid):
        """Hard delete (security groups have no soft delete): memberships go with it."""
        with self.lock:
            oid = oid.lower()
            obj = self.objects.get(oid)
            if obj is None:
                raise KeyError(oid)
            t = obj["_t"]
            for gid in list(self.member_of.get(oid, ())):
                self._remove_member(gid, oid)
            if t == "group":
                for mid in list(self.members.get(oid, ())):
                    self.members[oid].pop(mid, None)
                    s = self.member_of.get(mid)
                    if s:
                        s.discard(oid)
                del self.members[oid]
                # Microsoft 365 groups are soft-deleted (restorable): delta says "changed";
                # security groups are deleted for good: "deleted".
                self._log("group_deleted", oid, "changed" if "Unified" in (obj.get("groupTypes") or []) else "deleted")
            if t == "user" and obj.get("userPrincipalName"):
                self.upn_index.pop(obj["userPrincipalName"].lower(), None)
            del self.objects[oid]
            del self.by_type[t][oid]
            return obj

    def add_members(self, gid, mids):
        with self.lock:
            gid = gid.lower()
            if gid not in self.members:
                raise KeyError(gid)
            added = []
            for mid in mids:
                mid = mid.lower()
                obj = self.objects.get(mid)
                if obj is None:
                    raise KeyError(mid)
                if mid == gid:
                    raise ValueError("a group cannot be its own member")
                if mid in self.members[gid]:
                    continue
                self.members[gid][mid] = None
                self.member_of.setdefault(mid, set()).add(gid)
                self._log("member_added", gid, (mid, obj["_t"]))
                added.append(mid)
            return added

    def _remove_member(self, gid, mid):
        if mid not in self.members.get(gid, {}):
            return False
        del self.members[gid][mid]
        self.member_of.get(mid, set()).discard(gid)
        self._log("member_removed", gid, (mid, self.objects[mid]["_t"]))
        return True

    def remove_members(self, gid, mids):
        with self.lock:
            gid = gid.lower()
            if gid not in self.members:
                raise KeyError(gid)
            return [m.lower() for m in mids if self._remove_member(gid, m.lower())]

    def create_object(self, type_name, props):
        with self.lock:
            props = dict(props)
            if props.get("id") and props["id"].lower() in self.objects:
                raise ValueError("object %s exists" % props["id"])
            if type_name == "group":
                return self.create_group(props)
            return self._put(props, type_name)

    def update_object(self, oid, props):
        with self.lock:
            obj = self.get(oid)
            if obj is None:
                raise KeyError(oid)
            if obj["_t"] == "group":
                return self.update_group(oid, props)
            if obj["_t"] == "user" and "userPrincipalName" in props and obj.get("userPrincipalName"):
                self.upn_index.pop(obj["userPrincipalName"].lower(), None)
            for k, v in props.items():
                if k not in ("id", "_t"):
                    obj[k] = v
            if obj["_t"] == "user" and obj.get("userPrincipalName"):
                self.upn_index[obj["userPrincipalName"].lower()] = obj["id"]
            return obj

    # -- delta ------------------------------------------------------------------------------------
    def changes_since(self, seq):
        """The change log after ``seq`` folded per group: list of (gid, entry) in first-change order.

        entry = {"created": bool, "deleted": bool, "props": set, "members": dict(mid -> (added, type))}
        """
        start = bisect.bisect_right(self.change_seqs, seq)
        groups = {}
        for unused, kind, gid, payload in self.changes[start:]:
            e = groups.get(gid)
            if e is None:
                e = groups[gid] = {"created": False, "deleted": False, "props": set(), "members": {}}
            if kind == "group_created":
                e["created"] = True
                e["deleted"] = False
            elif kind == "group_deleted":
                e["deleted"] = True
                e["reason"] = payload or "deleted"
                e["members"] = {}
            elif kind == "group_updated":
                e["props"] |= payload
            else:
                mid, t = payload
                e["members"].pop(mid, None)
                e["members"][mid] = (kind == "member_added", t)
        return list(groups.items())

    def export(self):
        """The tenant back as fixture JSON (current state)."""
        with self.lock:
            out = {"tenant_id": self.tenant_id, "tenant_type": self.tenant_type,
                   "default_domain": self.default_domain, "organization": self.organization,
                   "skus": self.skus, "apps": list(self.apps.values()),
                   "managed_identities": self.managed_identities, "settings": self.settings,
                   "role_assignments": self.explicit_role_assignments}
            for key, t in OBJECT_COLLECTIONS:
                out[key] = [{k: v for k, v in self.objects[i].items() if k != "_t"} for i in self.by_type[t]]
            out["memberships"] = {g: list(m) for g, m in self.members.items() if m}
            return out
