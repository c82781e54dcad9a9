"""A local HTTPS WS-Management endpoint that pywinrm can run PowerShell against.

It speaks the part of WS-Management / WinRS (MS-WSMV) that ``winrm.Session(...).run_ps()``
uses: Create shell, Command, Receive, Signal (terminate) and Delete, with SOAP 1.2 envelopes as
Windows sends them (WS-Addressing RelatesTo, ShellId selector, base64 streams, CommandState
Done with ExitCode) and WS-Management faults for a bad request. The command must be the
``powershell -encodedcommand <base64 UTF-16LE>`` pywinrm builds; the script is not run but
evaluated by ``powershell.run_script`` against the endpoint's ``HostFacts``; an unknown
command or statement gives a non-zero exit code and stderr.

Authentication: ``Basic`` (checked against ``users``), and ``Negotiate``/``NTLM`` through
pyspnego's NTLM acceptor when ``ntlm=True`` (credentials in an ``NTLM_USER_FILE`` the endpoint
writes; channel binding of the TLS certificate is enforced when the client sends it).
TLS: a certificate of the lab CA for 127.0.0.1 (tests validate it with the lab CA file).
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import hashlib
import http.server
import os
import re
import ssl
import threading
import uuid
import xml.etree.ElementTree as ET

from winrm_endpoint.powershell import HostFacts, run_script

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
}
RESOURCE_CMD = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
ACTION_CREATE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
ACTION_DELETE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
ACTION_COMMAND = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command"
ACTION_RECEIVE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive"
ACTION_SIGNAL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal"
SIGNAL_TERMINATE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate"
STATE_DONE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"
STATE_RUNNING = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"

_PS_COMMAND = re.compile(r"^powershell(?:\.exe)?\s+-encodedcommand\s+([A-Za-z0-9+/=]+)$", re.I)


class Fault(Exception):
    """A WS-Management fault: HTTP 500 with a SOAP Fault (MS-WSMV 2.2.4.x)."""

    def __init__(self, subcode, reason, wsman_code=2150858770):
        super(Fault, self).__init__(reason)
        self.subcode = subcode
        self.reason = reason
        self.wsman_code = wsman_code


def _text(elem):
    return (elem.text or "").strip() if elem is not None else None


class _Command(object):
    def __init__(self, rc, stdout, stderr, chunk):
        self.rc = rc
        self.stdout = stdout.encode("utf-8")
        self.stderr = stderr.encode("utf-8")
        self.chunk = chunk
        self.sent = 0


class WinRMEndpoint(object):
    """``WinRMEndpoint(facts, users={"user": "password"}).start()``; ``.url``, ``.ca_file``,
    ``.scripts`` (decoded scripts received), ``.log`` (one dict per request), ``.stop()``.

    ``facts`` (``HostFacts``) may be replaced or mutated between runs. ``receive_chunk``: when
    set, each Receive returns at most that many stdout bytes (State Running until the last), so
    the client's Receive loop is exercised."""

    def __init__(self, facts=None, users=None, host="127.0.0.1", port=0, ntlm=False, lab_dir=None,
                 receive_chunk=None, netbios_domain="CORP"):
        self.facts = facts if facts is not None else HostFacts.agent_host()
        self.users = dict(users or {"agent-admin": "Agent-Admin-Pass1!"})
        self.host = host
        self.port = port
        self.ntlm = ntlm
        self.netbios_domain = netbios_domain
        self.receive_chunk = receive_chunk
        self.scripts = []
        self.log = []
        self.shells = {}
        self._lock = threading.Lock()
        self._server = None
        self._thread = None
        self._lab_dir = lab_dir
        self.ca_file = None
        self.cert_file = None
        self.key_file = None
        self.ntlm_user_file = None
        self.cert_hash = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self):
        from lab.pki import default_lab_dir, ensure_ca, issue_cert
        lab_dir = self._lab_dir or default_lab_dir()
        self.ca_file = ensure_ca(lab_dir)[0]
        self.ca_file = str(self.ca_file)
        cert, key = issue_cert(lab_dir, "winrm-endpoint", ["localhost"], [self.host])
        self.cert_file, self.key_file = str(cert), str(key)
        with open(self.cert_file, "rb") as fh:
            der = ssl.PEM_cert_to_DER_cert(fh.read().decode("ascii"))
        self.cert_hash = hashlib.sha256(der).digest()   # RFC 5929 tls-server-end-point (SHA-256 signed certs)
        if self.ntlm:
            directory = os.path.join(str(lab_dir), "winrm-endpoint")
            os.makedirs(directory, exist_ok=True)
            self.ntlm_user_file = os.path.join(directory, "ntlm-users-%d" % os.getpid())
            with open(self.ntlm_user_file, "w") as fh:
                for user, password in self.users.items():
                    fh.write("%s:%s:%s\n" % (self.netbios_domain, user, password))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        endpoint = self

        class Handler(_Handler):
            pass
        Handler.endpoint = endpoint
        self._server = _Server((self.host, self.port), Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="winrm-endpoint", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.ntlm_user_file and os.path.exists(self.ntlm_user_file):
            os.unlink(self.ntlm_user_file)
        if self.ntlm_user_file and os.environ.get("NTLM_USER_FILE") == self.ntlm_user_file:
            del os.environ["NTLM_USER_FILE"]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return "https://%s:%d/wsman" % (self.host, self.port)

    # -- WS-Man -------------------------------------------------------------------------------

    def handle(self, body, user):
        """SOAP request bytes -> (HTTP status, SOAP response str)."""
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            raise Fault("w:InvalidMessageInformationHeader", "The request is not well-formed XML: %s" % exc)
        if root.tag != "{%s}Envelope" % NS["s"]:
            raise Fault("w:InvalidMessageInformationHeader", "The request is not a SOAP 1.2 envelope.")
        header = root.find("s:Header", NS)
        body_elem = root.find("s:Body", NS)
        if header is None or body_elem is None:
            raise Fault("w:InvalidMessageInformationHeader", "The SOAP envelope has no Header or no Body.")
        action = _text(header.find("a:Action", NS))
        resource = _text(header.find("w:ResourceURI", NS))
        message_id = _text(header.find("a:MessageID", NS))
        reply_to = _text(header.find("a:ReplyTo/a:Address", NS))
        if not message_id or not message_id.startswith("uuid:"):
            raise Fault("a:InvalidMessageInformationHeader", "MessageID is missing or not a uuid: URI.")
        if reply_to != ANONYMOUS:
            raise Fault("a:InvalidMessageInformationHeader", "ReplyTo must be the anonymous address.")
        if resource != RESOURCE_CMD:
            raise Fault("w:DestinationUnreachable", "The WS-Management service cannot process the request: unknown resource URI %r." % resource,
                        2150858882)
        timeout = _text(header.find("w:OperationTimeout", NS))
        if not timeout or not re.match(r"^PT\d+(\.\d+)?S$", timeout):
            raise Fault("w:InvalidMessageInformationHeader", "OperationTimeout is missing or malformed: %r." % timeout)
        shell_id = None
        selector = header.find("w:SelectorSet/w:Selector[@Name='ShellId']", NS)
        if selector is not None:
            shell_id = _text(selector)
        entry = {"action": action.rsplit("/", 1)[-1] if action else None, "user": user, "shell_id": shell_id}
        with self._lock:
            self.log.append(entry)
        if action == ACTION_CREATE:
            shell = body_elem.find("rsp:Shell", NS)
            if shell is None or _text(shell.find("rsp:InputStreams", NS)) != "stdin" \
                    or _text(shell.find("rsp:OutputStreams", NS)) != "stdout stderr":
                raise Fault("w:SchemaValidationError", "The Create request must carry rsp:Shell with stdin and stdout stderr streams.")
            new_id = str(uuid.uuid4()).upper()
            with self._lock:
                self.shells[new_id] = {"user": user, "commands": {}}
            entry["shell_id"] = new_id
            return self._envelope(
                "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse", message_id,
                '<x:ResourceCreated><a:Address>%s</a:Address><a:ReferenceParameters><w:ResourceURI>%s</w:ResourceURI>'
                '<w:SelectorSet><w:Selector Name="ShellId">%s</w:Selector></w:SelectorSet></a:ReferenceParameters>'
                '</x:ResourceCreated><rsp:Shell><rsp:ShellId>%s</rsp:ShellId><rsp:ResourceUri>%s</rsp:ResourceUri>'
                '<rsp:Owner>%s</rsp:Owner><rsp:InputStreams>stdin</rsp:InputStreams>'
                '<rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>'
                % (self.url, RESOURCE_CMD, new_id, new_id, RESOURCE_CMD, _xml_escape(user)))
        shell = self._shell(shell_id, user)
        if action == ACTION_COMMAND:
            line = _text(body_elem.find("rsp:CommandLine/rsp:Command", NS)) or ""
            args = _text(body_elem.find("rsp:CommandLine/rsp:Arguments", NS))
            if args:
                line = "%s %s" % (line, args)
            rc, out, err = self._run(line)
            command_id = str(uuid.uuid4()).upper()
            with self._lock:
                shell["commands"][command_id] = _Command(rc, out, err, self.receive_chunk)
            return self._envelope(ACTION_COMMAND + "Response", message_id,
                                  "<rsp:CommandResponse><rsp:CommandId>%s</rsp:CommandId></rsp:CommandResponse>" % command_id)
        if action == ACTION_RECEIVE:
            desired = body_elem.find("rsp:Receive/rsp:DesiredStream", NS)
            if desired is None or _text(desired) != "stdout stderr":
                raise Fault("w:SchemaValidationError", "Receive must ask for the stdout stderr streams.")
            command = self._command(shell, desired.get("CommandId"))
            return self._envelope(ACTION_RECEIVE + "Response", message_id, self._receive(command, desired.get("CommandId")))
        if action == ACTION_SIGNAL:
            signal = body_elem.find("rsp:Signal", NS)
            if signal is None or _text(signal.find("rsp:Code", NS)) != SIGNAL_TERMINATE:
                raise Fault("w:SchemaValidationError", "Only the terminate signal is supported.")
            self._command(shell, signal.get("CommandId"))
            with self._lock:
                shell["commands"].pop(signal.get("CommandId"), None)
            return self._envelope(ACTION_SIGNAL + "Response", message_id, "<rsp:SignalResponse/>")
        if action == ACTION_DELETE:
            with self._lock:
                self.shells.pop(shell_id, None)
            return self._envelope("http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse", message_id, "")
        raise Fault("a:ActionNotSupported", "The action %r is not supported by this endpoint." % action, 2150858776)

    def _shell(self, shell_id, user):
        with self._lock:
            shell = self.shells.get(shell_id) if shell_id else None
        if shell is None:
            raise Fault("w:InvalidSelectors", "The request for the Windows Remote Shell with ShellId %s failed because the shell was "
                        "not found on the server." % shell_id, 2150858843)
        if shell["user"] != user:
            raise Fault("w:AccessDenied", "The shell %s belongs to another user." % shell_id, 5)
        return shell

    def _command(self, shell, command_id):
        with self._lock:
            command = shell["commands"].get(command_id)
        if command is None:
            raise Fault("w:InvalidSelectors", "The command %s was not found in the shell." % command_id, 2150858843)
        return command

    def _run(self, line):
        match = _PS_COMMAND.match(line.strip())
        if not match:
            name = line.strip().split(" ", 1)[0]
            self.scripts.append(None)
            return 1, "", "'%s' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n" % name
        try:
            script = base64.b64decode(match.group(1), validate=True).decode("utf-16-le")
        except (ValueError, UnicodeDecodeError) as exc:
            self.scripts.append(None)
            return 1, "", "powershell: -EncodedCommand is not valid base64 UTF-16LE: %s\r\n" % exc
        with self._lock:
            self.scripts.append(script)
            facts = self.facts
        return run_script(script, facts)

    def _receive(self, command, command_id):
        out = command.stdout[command.sent:]
        if command.chunk:
            out = out[:command.chunk]
        command.sent += len(out)
        done = command.sent >= len(command.stdout)
        parts = []
        if out:
            parts.append('<rsp:Stream Name="stdout" CommandId="%s">%s</rsp:Stream>' % (command_id, base64.b64encode(out).decode("ascii")))
        if done:
            parts.append('<rsp:Stream Name="stdout" CommandId="%s" End="true"></rsp:Stream>' % command_id)
            if command.stderr:
                parts.append('<rsp:Stream Name="stderr" CommandId="%s">%s</rsp:Stream>'
                             % (command_id, base64.b64encode(command.stderr).decode("ascii")))
            parts.append('<rsp:Stream Name="stderr" CommandId="%s" End="true"></rsp:Stream>' % command_id)
            parts.append('<rsp:CommandState CommandId="%s" State="%s"><rsp:ExitCode>%d</rsp:ExitCode></rsp:CommandState>'
                         % (command_id, STATE_DONE, command.rc))
        else:
            parts.append('<rsp:CommandState CommandId="%s" State="%s"/>' % (command_id, STATE_RUNNING))
        return '<rsp:ReceiveResponse SequenceID="0">%s</rsp:ReceiveResponse>' % "".join(parts)

    def _envelope(self, action, relates_to, body):
        return 200, (
            '<s:Envelope xml:lang="en-US" xmlns:s="%(s)s" xmlns:a="%(a)s" xmlns:x="%(x)s" xmlns:w="%(w)s" xmlns:rsp="%(rsp)s" '
            'xmlns:p="%(p)s"><s:Header><a:Action>%(action)s</a:Action><a:MessageID>uuid:%(mid)s</a:MessageID>'
            '<a:To>%(anon)s</a:To><a:RelatesTo>%(rel)s</a:RelatesTo></s:Header><s:Body>%(body)s</s:Body></s:Envelope>'
            % dict(NS, action=action, mid=str(uuid.uuid4()).upper(), anon=ANONYMOUS, rel=relates_to, body=body))

    @staticmethod
    def fault_envelope(fault, relates_to=None):
        return (
            '<s:Envelope xml:lang="en-US" xmlns:s="%(s)s" xmlns:a="%(a)s" xmlns:w="%(w)s" xmlns:f="%(f)s">'
            '<s:Header><a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action>'
            '<a:MessageID>uuid:%(mid)s</a:MessageID><a:RelatesTo>%(rel)s</a:RelatesTo></s:Header>'
            '<s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>%(sub)s</s:Value></s:Subcode></s:Code>'
            '<s:Reason><s:Text xml:lang="en-US">%(reason)s</s:Text></s:Reason><s:Detail>'
            '<f:WSManFault Code="%(code)d" Machine="127.0.0.1"><f:Message>%(reason)s</f:Message></f:WSManFault>'
            '</s:Detail></s:Fault></s:Body></s:Envelope>'
            % dict(NS, mid=str(uuid.uuid4()).upper(), rel=relates_to or "", sub=fault.subcode,
                   reason=_xml_escape(fault.reason), code=fault.wsman_code))


def _xml_escape(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # quiet: TLS refusals by tests are expected
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    endpoint = None

    def log_message(self, fmt, *args):  # keep test output clean
        pass

    def setup(self):
        super(_Handler, self).setup()
        self.ntlm_context = None     # NTLM is connection-oriented: one context per TCP connection
        self.ntlm_user = None

    def _reply(self, status, body=b"", headers=None, content_type="application/soap+xml;charset=UTF-8"):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(status)
        for name, value in (headers or []):
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _challenge(self, extra=None):
        headers = []
        if self.endpoint.ntlm:
            headers += [("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "NTLM")]
        headers.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        headers += extra or []
        self._reply(401, b"", headers)

    def _authenticate(self):
        """The authenticated user name, or None after answering 401 (or the NTLM challenge)."""
        auth = self.headers.get("Authorization") or ""
        scheme, _sep, token = auth.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            try:
                user, _sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                self._challenge()
                return None
            if self.endpoint.users.get(user) == password and password:
                return user
            self._challenge()
            return None
        if scheme in ("negotiate", "ntlm") and self.endpoint.ntlm:
            return self._ntlm_step(scheme, token.strip())
        if self.ntlm_user:
            return self.ntlm_user
        self._challenge()
        return None

    def _ntlm_step(self, scheme, token):
        import spnego
        from spnego.channel_bindings import GssChannelBindings
        try:
            data = base64.b64decode(token, validate=True)
        except ValueError:
            self._challenge()
            return None
        if self.ntlm_context is None or data[:8] == b"NTLMSSP\x00" and data[8:12] == b"\x01\x00\x00\x00":
            os.environ["NTLM_USER_FILE"] = self.endpoint.ntlm_user_file
            cbt = GssChannelBindings(application_data=b"tls-server-end-point:" + self.endpoint.cert_hash)
            self.ntlm_context = spnego.server(protocol="ntlm", channel_bindings=cbt)
            self.ntlm_user = None
        try:
            reply = self.ntlm_context.step(data)
        except Exception:  # pylint: disable=broad-except  # any refusal: wrong password, bad CBT, bad message
            self.ntlm_context = None
            self._challenge()
            return None
        if not self.ntlm_context.complete:
            challenge = "%s %s" % ("Negotiate" if scheme == "negotiate" else "NTLM", base64.b64encode(reply or b"").decode("ascii"))
            self._reply(401, b"", [("WWW-Authenticate", challenge)])
            return None
        user = self.ntlm_context.client_principal or ""
        self.ntlm_user = user.split("\\", 1)[-1]
        return self.ntlm_user

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.rstrip("/").lower() != "/wsman":
            self._reply(404, b"", content_type="text/plain")
            return
        user = self._authenticate()
        if user is None:
            return
        if not body:      # an empty POST (authentication probe) is answered like Windows: 200, no body
            self._reply(200)
            return
        ctype = (self.headers.get("Content-Type") or "").lower()
        if not ctype.startswith("application/soap+xml"):
            self._reply(415, b"", content_type="text/plain")
            return
        try:
            status, text = self.endpoint.handle(body, user)
        except Fault as fault:
            relates = None
            try:
                relates = _text(ET.fromstring(body).find("s:Header/a:MessageID", NS))
            except ET.ParseError:
                pass
            self._reply(500, WinRMEndpoint.fault_envelope(fault, relates))
            return
        self._reply(status, text)

    def do_GET(self):
        self._reply(405, b"", content_type="text/plain")
