"""A deliberately tiny PowerShell "interpreter" answering from a table of host facts.

The WinRM endpoint does not run PowerShell. It decodes the script pywinrm sent and evaluates it
here, statement by statement, against ``HostFacts`` (files and their file versions, services,
registry keys, environment). Only the statement forms below are understood; anything else is an
error (exit code 1, a PowerShell-style CLIXML error record on stderr), so a test fails when the
module sends a script this table does not describe::

    $ErrorActionPreference = 'Stop'
    $r = [ordered]@{}
    $r.<key> = '<literal>'
    $r.<key> = $env:<NAME>
    $r.<key> = Test-Path -LiteralPath '<path>' [-PathType Leaf|Container]
    $r.<key> = Get-Item -LiteralPath '<path>' -ErrorAction SilentlyContinue | ForEach-Object { $_.VersionInfo.FileVersion }
    $r.<key> = Get-Service -Name '<name>' -ErrorAction SilentlyContinue | ForEach-Object { $_.Status.ToString() }
    $r.<key> = Get-Service -Name '<name>' -ErrorAction SilentlyContinue | ForEach-Object { $_.DisplayName }
    $r | ConvertTo-Json -Compress

Blank lines and ``#`` comment lines are ignored. Paths are compared case-insensitively, as
Windows does. ``HKLM:\\`` paths are registry keys, other paths are files (or their folders).
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import json
import re

AGENT_EXE = r"C:\Program Files\Microsoft Azure AD Connect Provisioning Agent\AADConnectProvisioningAgent.exe"
AGENT_SERVICE = "AADConnectProvisioningAgent"
AGENT_SERVICE_DISPLAY_NAME = "Microsoft Entra Provisioning Agent"
AGENT_REGISTRY = r"HKLM:\SOFTWARE\Microsoft\Azure AD Connect Agents\Azure AD Connect Provisioning Agent"
CONNECT_SYNC_EXE = r"C:\Program Files\Microsoft Azure AD Sync\Bin\miiserver.exe"
CONNECT_SYNC_SERVICE = "ADSync"


class HostFacts(object):
    """What the fake Windows host holds: ``files`` {path: file version or None}, ``services``
    {name: {"status", "display_name"}}, ``registry`` [key paths], ``env`` {name: value}."""

    def __init__(self, files=None, services=None, registry=None, env=None):
        self.files = dict(files or {})
        self.services = dict(services or {})
        self.registry = list(registry or [])
        self.env = dict(env or {"COMPUTERNAME": "AGENT1"})

    @classmethod
    def agent_host(cls, agent_version="1.1.1370.0", service_status="Running", registry=True,
                   connect_sync_version=None, computer_name="AGENT1"):
        """A provisioning agent host. ``agent_version=None``: no agent installed (no exe, no
        service, no registry key); ``connect_sync_version=None``: Connect Sync not installed."""
        files, services, registry_keys = {}, {}, []
        if agent_version is not None:
            files[AGENT_EXE] = agent_version
            if service_status is not None:
                services[AGENT_SERVICE] = {"status": service_status, "display_name": AGENT_SERVICE_DISPLAY_NAME}
            if registry:
                registry_keys.append(AGENT_REGISTRY)
        if connect_sync_version is not None:
            files[CONNECT_SYNC_EXE] = connect_sync_version
            services[CONNECT_SYNC_SERVICE] = {"status": "Running", "display_name": "Microsoft Azure AD Sync"}
        return cls(files, services, registry_keys, {"COMPUTERNAME": computer_name})

    # lookups (case-insensitive like Windows)
    def _file(self, path):
        for name, version in self.files.items():
            if name.lower() == path.lower():
                return True, version
        return False, None

    def _is_folder(self, path):
        prefix = path.lower().rstrip("\\") + "\\"
        return any(name.lower().startswith(prefix) for name in self.files)

    def _service(self, name):
        for key, value in self.services.items():
            if key.lower() == name.lower():
                return value
        return None

    def _registry(self, path):
        want = path.lower().rstrip("\\")
        return any(k.lower().rstrip("\\") == want or k.lower().startswith(want + "\\") for k in self.registry)


class ScriptError(Exception):
    pass


_STR = r"'((?:[^']|'')*)'"
_KEY = r"\$r\.([A-Za-z_][A-Za-z0-9_]*)"
_FORMS = [
    ("literal", re.compile(r"^%s\s*=\s*%s$" % (_KEY, _STR))),
    ("env", re.compile(r"^%s\s*=\s*\$env:([A-Za-z_][A-Za-z0-9_]*)$" % _KEY, re.I)),
    ("test_path", re.compile(r"^%s\s*=\s*Test-Path\s+-LiteralPath\s+%s(?:\s+-PathType\s+(Leaf|Container))?$" % (_KEY, _STR), re.I)),
    ("file_version", re.compile(r"^%s\s*=\s*Get-Item\s+-LiteralPath\s+%s\s+-ErrorAction\s+SilentlyContinue\s*\|\s*"
                                r"ForEach-Object\s*\{\s*\$_\.VersionInfo\.FileVersion\s*\}$" % (_KEY, _STR), re.I)),
    ("service_status", re.compile(r"^%s\s*=\s*Get-Service\s+-Name\s+%s\s+-ErrorAction\s+SilentlyContinue\s*\|\s*"
                                  r"ForEach-Object\s*\{\s*\$_\.Status\.ToString\(\)\s*\}$" % (_KEY, _STR), re.I)),
    ("service_display_name", re.compile(r"^%s\s*=\s*Get-Service\s+-Name\s+%s\s+-ErrorAction\s+SilentlyContinue\s*\|\s*"
                                        r"ForEach-Object\s*\{\s*\$_\.DisplayName\s*\}$" % (_KEY, _STR), re.I)),
]


def _unquote(text):
    return text.replace("''", "'")


def run_script(script, facts):
    """Evaluate ``script`` against ``facts``: returns (exit code, stdout str, stderr str)."""
    result = None
    output = []
    try:
        for number, raw in enumerate(script.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if re.match(r"^\$ErrorActionPreference\s*=\s*'Stop'$", line, re.I):
                continue
            if re.match(r"^\$r\s*=\s*\[ordered\]@\{\}$", line, re.I):
                result = collections.OrderedDict()
                continue
            if re.match(r"^\$r\s*\|\s*ConvertTo-Json\s+-Compress$", line, re.I):
                if result is None:
                    raise ScriptError("line %d: $r is not defined" % number)
                output.append(json.dumps(result, separators=(",", ":")))
                continue
            for kind, pattern in _FORMS:
                match = pattern.match(line)
                if match:
                    break
            else:
                raise ScriptError("line %d: the term or statement %r is not recognized by this endpoint's host-fact table" % (number, line))
            if result is None:
                raise ScriptError("line %d: cannot index into a null value ($r is not defined)" % number)
            key, arg = match.group(1), match.group(2)
            result[key] = _evaluate(kind, arg, match, facts)
    except ScriptError as exc:
        return 1, "", clixml_error(str(exc))
    return 0, "".join(o + "\r\n" for o in output), ""


def _evaluate(kind, arg, match, facts):
    if kind == "literal":
        return _unquote(arg)
    if kind == "env":
        return facts.env.get(arg.upper())
    path = _unquote(arg)
    if kind == "test_path":
        path_type = (match.group(3) or "").lower()
        if path.upper().startswith("HKLM:\\"):
            if path_type == "leaf":
                return False
            return facts._registry(path)
        exists = facts._file(path)[0]
        folder = facts._is_folder(path)
        if path_type == "leaf":
            return exists
        if path_type == "container":
            return folder
        return exists or folder
    if kind == "file_version":
        exists, version = facts._file(path)
        return version if exists else None
    service = facts._service(path)
    if service is None:
        return None
    if kind == "service_status":
        return service["status"]
    return service["display_name"]


def clixml_error(message):
    """stderr as powershell.exe writes it under WinRM: a CLIXML error record."""
    text = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return ('#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
            '<S S="Error">%s_x000D__x000A_</S></Objs>' % text)
