# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AD lab: real Samba AD domain controllers on loopback addresses, one per forest.

CLI (run with the project's virtualenv python, as root)::

    python tests/lab/lab.py up     [--forest corp --forest fabrikam] [--no-schema-extension]
    python tests/lab/lab.py status
    python tests/lab/lab.py down   [--forest NAME ...]
    python tests/lab/lab.py reset  [--forest NAME ...] [--no-schema-extension]
    python tests/lab/lab.py seed   --users 20000 [--forest NAME ...] [--with-passwords]
    python tests/lab/lab.py snapshot NAME [--forest corp]   (stop the DC, copy its folder, start it)
    python tests/lab/lab.py restore  NAME [--forest corp]   (stop the DC, put the copy back, start it)
    python tests/lab/lab.py preflight   (what the machine lacks for the lab; see preflight.py)

Python API (test fixtures, the demo, the benchmarks)::

    lab = Lab()                       # lab dir: $CLOUDSYNC_LAB_DIR or <repo>/.lab
    forests = lab.up()                # {"corp": Forest, "fabrikam": Forest}
    corp = lab.forest("corp")
    corp.ldaps_url(), corp.gc_url(), corp.ca_file, corp.identities
    lab.stop_forest("corp"); lab.start_forest("corp")
    lab.seed("corp", users=20000)
    lab.snapshot("corp", "seeded"); lab.restore("corp", "seeded")   # <lab dir>/snapshots/corp/seeded
    lab.status(); lab.down(); lab.reset()

Facts this relies on are in ../shared/spec/ad-lab.md. Each forest lives in <lab dir>/<name>/:
Samba's provision target (etc/, private/, state/, cache/, run/, log/), forest.json (what was
provisioned), krb5.conf, identities.json, and Kerberos credential caches. Nothing goes to
system folders, except the SMB share folders (/srv/cloudsync-lab-shares/<lab>/, or
$CLOUDSYNC_LAB_SHARES_DIR): smbd reads them as domain users, who cannot enter a lab dir under a
0700 home. Only processes whose PID file is under the lab dir (and whose command line
names our smb.conf) are ever stopped.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid

if __package__ in (None, ""):  # run as a script: make "lab" importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from lab import pki  # noqa: E402  pylint: disable=wrong-import-position

SYSTEM_PYTHON = "/usr/bin/python3"
SAMBA_TOOL = "/usr/bin/samba-tool"
SAMBA = "/usr/sbin/samba"
SCHEMA_2016_LDF = "/usr/share/samba/setup/ad-schema/AD_DS_Attributes__Windows_Server_2016.ldf"

ADMIN_PASSWORD = "Lab-Admin-Pass1!"
USER_PASSWORD = "Lab-User-Pass1!"
WRITEBACK_USER = "svc-writeback"
WRITEBACK_PASSWORD = "Lab-Writeback-Pass1!"
DEFAULT_USERS = 40
SEED_BATCH = 2000  # one ldbadd transaction each (a few seconds): keeps the DC's write lock short
START_TIMEOUT = 90.0
SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")

UAC_NORMAL = 0x200
UAC_DISABLED = 0x2
UAC_DONT_EXPIRE = 0x10000

FORESTS = {
    # name: (realm, netbios, default ip, schema extension by default)
    "corp": ("CORP.EXAMPLE.TEST", "CORP", "127.0.0.2", True),
    "fabrikam": ("FABRIKAM.EXAMPLE.TEST", "FABRIKAM", "127.0.0.3", True),
    "legacy": ("LEGACY.EXAMPLE.TEST", "LEGACY", "127.0.0.4", False),
}
DEFAULT_FORESTS = ("corp", "fabrikam")
# The forest whose DC also serves SMB shares (smbd + winbindd of Samba AD DC), for the tests that
# prove access follows Entra. libwbclient (smbd's way to winbindd) looks for winbindd only at the
# compiled-in /run/samba/winbindd (another directory only under Samba's selftest nss_wrapper), which
# every lab on the machine would share: Lab.ensure_smb starts this DC's smbd and winbindd in a
# mount namespace of their own where the forest's run/winbindd is mounted on that path.
SMB_FOREST = "corp"
WINBINDD_SOCKET_DIR = "/run/samba/winbindd"
SMBD = "/usr/sbin/smbd"
WINBINDD = "/usr/sbin/winbindd"


class LabError(Exception):
    pass


def forest_ip(name):
    """The forest's IP: CLOUDSYNC_LAB_IPS="corp,fabrikam,legacy" overrides the defaults."""
    env = os.environ.get("CLOUDSYNC_LAB_IPS", "").strip()
    order = list(FORESTS)
    if env:
        ips = [x.strip() for x in env.split(",") if x.strip()]
        idx = order.index(name)
        if idx < len(ips):
            return ips[idx]
    return FORESTS[name][2]


def _system_env(extra=None):
    """Environment for Samba's tools: no virtualenv leaking into the system python."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    env.setdefault("LANG", "C.UTF-8")
    if extra:
        env.update(extra)
    return env


def _run(args, input_text=None, env=None, check=True, timeout=600):
    proc = subprocess.run(args, input=input_text, capture_output=True, text=True, env=env or _system_env(),
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        command = " ".join(str(a) for a in args[:3])
        raise LabError("%s failed (rc=%s): %s%s" % (command, proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:]))
    return proc


def parse_ldif(text):
    """Parse ldbsearch output into a list of (dn, {lowercase attr: [values]})."""
    records = []
    lines = []
    for raw in text.splitlines():
        if raw.startswith(" ") and lines:
            lines[-1] += raw[1:]
        else:
            lines.append(raw)
    dn, attrs = None, {}
    for line in lines + [""]:
        if not line.strip():
            if dn is not None:
                records.append((dn, attrs))
            dn, attrs = None, {}
            continue
        if line.startswith("#") or ":" not in line:
            continue
        key, dummy, value = line.partition(":")
        if value.startswith(":"):
            value = base64.b64decode(value[1:].strip()).decode("utf-8", "replace")
        else:
            value = value.strip()
        if key == "dn":
            dn = value
        elif key == "ref":
            continue
        else:
            attrs.setdefault(key.lower(), []).append(value)
    return records


def _unicode_pwd(password):
    return base64.b64encode(('"%s"' % password).encode("utf-16-le")).decode("ascii")


def immutable_id(guid_str):
    """Entra Connect's sourceAnchor: base64 of objectGUID's bytes as AD stores them (little-endian)."""
    return base64.b64encode(uuid.UUID(guid_str).bytes_le).decode("ascii")


@dataclasses.dataclass
class Forest:
    name: str
    realm: str
    netbios: str
    dns_domain: str
    ip: str
    dc_hostname: str
    base_dn: str
    admin_user: str
    admin_upn: str
    admin_dn: str
    admin_password: str
    ca_file: str
    krb5_conf: str
    dir: str
    identities: list = dataclasses.field(default_factory=list, repr=False)
    unprivileged_user: str = WRITEBACK_USER
    unprivileged_password: str = WRITEBACK_PASSWORD
    unprivileged_dn: str = ""
    unprivileged_upn: str = ""
    staff_ou: str = ""
    groups_ou: str = ""
    delegated_ou: str = ""
    schema_extended: bool = True
    user_password: str = USER_PASSWORD

    def ldaps_url(self):
        return "ldaps://%s:636" % self.ip

    def gc_url(self):
        return "ldaps://%s:3269" % self.ip

    def ldap_url(self):
        """Plain LDAP (389), for StartTLS or for proving plaintext binds are refused."""
        return "ldap://%s:389" % self.ip

    def kinit(self, principal=None, password=None, ccache=None):
        """Get a TGT (kinit against this forest's KDC); returns the env vars to use it."""
        principal = principal or "%s@%s" % (self.admin_user, self.realm)
        password = self.admin_password if password is None else password
        if ccache is None:
            ccache = os.path.join(self.dir, "ccache-%s" % principal.split("@")[0].lower().replace("/", "_"))
        env = self.kerberos_env(ccache)
        _run(["kinit", principal], input_text=password + "\n", env=_system_env(env), timeout=30)
        return env

    def smb_read(self, share, filename, principal, password, ccache):
        """A fresh Kerberos ticket for ``principal`` (kinit into ``ccache``), then ``filename`` read from
        ``share`` on this DC by name with smbclient --use-kerberos=required. Returns (ok, content or
        smbclient's error, e.g. NT_STATUS_ACCESS_DENIED)."""
        if os.path.exists(ccache):
            os.unlink(ccache)
        env = self.kinit(principal, password, ccache)
        local = "%s.out" % ccache
        if os.path.exists(local):
            os.unlink(local)
        proc = _run(["smbclient", "//%s/%s" % (self.dc_hostname, share), "-I", self.ip, "--use-kerberos=required", "-N",
                     "-c", "get %s %s" % (filename, local)], env=_system_env(env), check=False, timeout=60)
        if proc.returncode == 0 and os.path.exists(local):
            with open(local) as handle:
                text = handle.read()
            os.unlink(local)
            return True, text
        return False, (proc.stdout + proc.stderr).strip()

    def kerberos_env(self, ccache=None):
        if ccache is None:
            ccache = os.path.join(self.dir, "ccache-administrator")
        return {"KRB5_CONFIG": self.krb5_conf, "KRB5CCNAME": "FILE:" + str(ccache)}


class Lab:
    def __init__(self, lab_dir=None):
        self.dir = pathlib.Path(lab_dir).resolve() if lab_dir else pki.default_lab_dir()

    # ---------------------------------------------------------------- paths and records
    def _fdir(self, name):
        return self.dir / name

    @contextlib.contextmanager
    def _lock(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lab.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _meta(self, name):
        path = self._fdir(name) / "forest.json"
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def forest(self, name):
        """The Forest of a provisioned forest (whether running or not)."""
        if name not in FORESTS:
            raise LabError("unknown forest %r (known: %s)" % (name, ", ".join(FORESTS)))
        meta = self._meta(name)
        if meta is None:
            raise LabError("forest %s is not provisioned under %s: run lab.py up --forest %s" % (name, self.dir, name))
        fdir = self._fdir(name)
        ident_path = fdir / "identities.json"
        identities = json.loads(ident_path.read_text()) if ident_path.exists() else []
        base = meta["base_dn"]
        return Forest(
            name=name, realm=meta["realm"], netbios=meta["netbios"], dns_domain=meta["dns_domain"], ip=meta["ip"],
            dc_hostname=meta["dc_hostname"], base_dn=base, admin_user="Administrator",
            admin_upn="Administrator@" + meta["dns_domain"], admin_dn="CN=Administrator,CN=Users," + base,
            admin_password=meta["admin_password"], ca_file=str(pki.ensure_ca(self.dir)[0]),
            krb5_conf=str(fdir / "krb5.conf"), dir=str(fdir), identities=identities,
            unprivileged_user=WRITEBACK_USER, unprivileged_password=WRITEBACK_PASSWORD,
            unprivileged_dn="CN=%s,CN=Users,%s" % (WRITEBACK_USER, base),
            unprivileged_upn="%s@%s" % (WRITEBACK_USER, meta["dns_domain"]),
            staff_ou="OU=Staff," + base, groups_ou="OU=CloudGroups," + base, delegated_ou="OU=Delegated," + base,
            schema_extended=bool(meta["schema_extended"]), user_password=USER_PASSWORD)

    # ---------------------------------------------------------------- processes
    def _pid(self, name):
        """PID of our running samba for this forest, or None (only if the PID file is ours and alive)."""
        fdir = self._fdir(name)
        pid_file = fdir / "run" / "samba.pid"
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        # Samba overwrites its argv and environment (process titles): recognise ours by the PID
        # file it keeps open (and locked), which is under this forest's folder.
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
        except OSError:
            return None
        for fd in fds:
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == str(pid_file):
                    return pid
            except OSError:
                continue
        return None

    @staticmethod
    def _ensure_loopback(ip):
        out = _run(["ip", "-o", "addr", "show", "dev", "lo"]).stdout
        if (" %s/" % ip) not in out:
            _run(["ip", "addr", "add", "%s/8" % ip, "dev", "lo"])

    @staticmethod
    def _port_open(ip, port, timeout=1.0):
        try:
            with socket.create_connection((ip, port), timeout=timeout):
                return True
        except OSError:
            return False

    def _healthy(self, forest, timeout=5):
        """LDAPS with the lab CA validating the DC's certificate by IP, and an admin bind."""
        import ldap3  # the virtualenv's; imported late so the module loads without it
        try:
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=forest.ca_file)
            server = ldap3.Server(forest.ip, port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=timeout)
            conn = ldap3.Connection(server, forest.admin_upn, forest.admin_password, receive_timeout=timeout)
            if not conn.bind():
                return False
            conn.unbind()
            return True
        except Exception:  # pylint: disable=broad-except
            return False

    def _schema_has_attribute(self, forest):
        import ldap3
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=forest.ca_file)
        server = ldap3.Server(forest.ip, port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=5)
        conn = ldap3.Connection(server, forest.admin_upn, forest.admin_password, auto_bind=True, receive_timeout=10)
        try:
            conn.search("CN=Schema,CN=Configuration," + forest.base_dn,
                        "(lDAPDisplayName=msDS-ExternalDirectoryObjectId)", attributes=["attributeID"])
            return bool(conn.entries)
        finally:
            conn.unbind()

    def start_forest(self, name, timeout=START_TIMEOUT):
        """Start a provisioned forest's DC (no-op if ours is running) and wait until LDAPS answers."""
        forest = self.forest(name)
        fdir = self._fdir(name)
        self._ensure_loopback(forest.ip)
        self._ensure_cert(forest)
        if self._pid(name) is None:
            pid_file = fdir / "run" / "samba.pid"
            if pid_file.exists():
                pid_file.unlink()
            for port in (389, 636):
                if self._port_open(forest.ip, port, 0.5):
                    raise LabError("%s:%d is already in use by a process that is not this lab's (%s)" % (forest.ip, port, fdir))
            env = _system_env({"KRB5_CONFIG": forest.krb5_conf, "CLOUDSYNC_LAB_FOREST_DIR": str(fdir)})
            _run([SAMBA, "-s", str(fdir / "etc" / "smb.conf"), "-D", "-M", "prefork"], env=env, timeout=60)
        begun = time.monotonic()
        while time.monotonic() < begun + timeout:
            running = self._pid(name) is not None
            if running and self._healthy(forest, timeout=3):
                return forest
            if not running and time.monotonic() > begun + 10:
                break
            time.sleep(0.3)
        log = fdir / "log" / "samba.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise LabError("forest %s did not become healthy on %s within %ss; log tail:\n%s" % (name, forest.ip, timeout, tail))

    def stop_forest(self, name, timeout=30):
        """Stop our DC of this forest (only a process whose PID file is ours). True if one was stopped."""
        pid = self._pid(name)
        if pid is None:
            return False
        meta = self._meta(name) or {}
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pathlib.Path("/proc/%d" % pid).exists() or self._zombie(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        # prefork workers leave when their master goes; wait until the ports are free
        ip = meta.get("ip")
        while ip and time.monotonic() < deadline and (self._port_open(ip, 636, 0.3) or self._port_open(ip, 389, 0.3)):
            time.sleep(0.1)
        self._stop_smb(name)   # smbd/winbindd started on their own by ensure_smb
        return True

    @staticmethod
    def _zombie(pid):
        try:
            return pathlib.Path("/proc/%d/stat" % pid).read_text().split(")")[-1].split()[0] == "Z"
        except OSError:
            return True

    # ---------------------------------------------------------------- SMB shares (SMB_FOREST only)
    def _smb_pids(self, name):
        """PIDs of smbd/winbindd serving this forest's smb.conf (their PID files are under run/)."""
        fdir = self._fdir(name)
        conf = str(fdir / "etc" / "smb.conf")
        out = []
        for daemon in ("smbd", "winbindd"):
            try:
                pid = int((fdir / "run" / ("%s.pid" % daemon)).read_text().split()[0])
                cmdline = pathlib.Path("/proc/%d/cmdline" % pid).read_bytes().decode(errors="replace")
            except (OSError, ValueError, IndexError):
                continue
            if conf in cmdline and not self._zombie(pid):
                out.append(pid)
        return out

    def _stop_smb(self, name, timeout=15):
        """Stop the smbd/winbindd of this forest (started by ensure_smb, or left by samba)."""
        pids = self._smb_pids(name)
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if pathlib.Path("/proc/%d" % p).exists() and not self._zombie(p)]
            time.sleep(0.1)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

    def ensure_smb(self, name=SMB_FOREST, timeout=60):
        """Make this forest's DC serve SMB (smbd and winbindd of Samba AD DC) without touching its
        LDAP: smbd and winbindd are started on their own, as samba itself would start them (server
        role check:inhibit), in a mount namespace where the forest's run/winbindd is mounted on
        /run/samba/winbindd (see SMB_FOREST). A DC provisioned before the shares gets the include
        line in its smb.conf (read by smbd; the running samba keeps its LDAP). Returns the Forest."""
        if name != SMB_FOREST:
            raise LabError("only forest %s serves SMB" % SMB_FOREST)
        forest = self.forest(name)
        fdir = self._fdir(name)
        conf = fdir / "etc" / "smb.conf"
        pipe = fdir / "run" / "winbindd" / "pipe"
        with self._lock():
            text = conf.read_text()
            if "s3fs" in text or "shares.conf" not in text:
                self._write_smb_conf(name, self._meta(name))
            if self._pid(name) is None:
                raise LabError("forest %s is not running: lab.py up" % name)
            pids = self._smb_pids(name)
            legacy = [p for p in pids if "--foreground" in pathlib.Path("/proc/%d/cmdline" % p).read_bytes().decode(errors="replace")]
            if legacy:
                raise LabError("forest %s's samba runs smbd/winbindd itself (started with an older smb.conf that named s3fs): "
                               "restart it once (lab.py down --forest %s; lab.py up)" % (name, name))
            if len(pids) == 2 and self._port_open(forest.ip, 445, 0.5) and self._unix_socket_open(pipe):
                return forest
            self._stop_smb(name)
            (fdir / "run" / "winbindd").mkdir(parents=True, exist_ok=True)
            inhibit = "--option=server role check:inhibit=yes"
            script = ("mkdir -p {w} && mount --bind {d} {w} && {wb} -D '{o}' --configfile={c} && {smbd} -D '{o}' --configfile={c}"
                      .format(w=WINBINDD_SOCKET_DIR, d=fdir / "run" / "winbindd", wb=WINBINDD, smbd=SMBD, o=inhibit, c=conf))
            _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                 env=_system_env({"KRB5_CONFIG": forest.krb5_conf}), timeout=60)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._port_open(forest.ip, 445, 0.5) and self._unix_socket_open(pipe) and len(self._smb_pids(name)) == 2:
                    return forest
                time.sleep(0.3)
        raise LabError("smbd/winbindd of forest %s did not come up within %ss; see %s" % (name, timeout, fdir / "log"))

    @staticmethod
    def _unix_socket_open(path):
        try:
            with contextlib.closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as sock:
                sock.settimeout(2)
                sock.connect(str(path))
                return True
        except OSError:
            return False

    def smb_share(self, share, valid_group, files, name=SMB_FOREST):
        """Serve ``[share]`` (read only) from the forest's DC to the members of the AD group
        ``valid_group`` (nested membership counts, as in a Kerberos PAC), then ``smbcontrol smbd
        reload-config`` (LDAP is not touched). ``valid_group``: the group's objectSid (what a
        Windows ACL stores), or its sAMAccountName for ``valid users = @"NETBIOS\\name"``. Samba
        4.17's smbd matches the name form only for global groups: for a universal group (what
        written-back groups are) it denies members whose token holds the group's SID, so give
        those by SID. ``files``: {file name: text}. Returns the share's folder."""
        forest = self.ensure_smb(name)
        folder = self._share_dir(name, share)
        folder.mkdir(parents=True, exist_ok=True)
        for d in (folder,) + tuple(folder.parents)[:3]:  # smbd reads it as the domain user: every level traversable
            os.chmod(str(d), 0o755)
        for fname, text in files.items():
            path = folder / fname
            path.write_text(text)
            os.chmod(str(path), 0o644)
        valid = valid_group if valid_group.upper().startswith("S-1-") else '@"%s\\%s"' % (forest.netbios, valid_group)
        section = "[%s]\n    path = %s\n    read only = yes\n    valid users = %s\n" % (share, folder, valid)
        self._set_share_section(name, share, section)
        return folder

    def _shares_dir(self, name):
        """The forest's share folders, outside the lab dir: smbd opens them as the domain user, who
        cannot traverse a lab dir under a 0700 home (<repo>/.lab of a clone in /root, as on a fresh
        Debian machine). One folder per lab dir ($CLOUDSYNC_LAB_SHARES_DIR, else /srv/cloudsync-lab-shares)."""
        tag = hashlib.sha256(str(self.dir.resolve()).encode()).hexdigest()[:12]
        return pathlib.Path(os.environ.get("CLOUDSYNC_LAB_SHARES_DIR", "/srv/cloudsync-lab-shares")) / tag / name

    def _share_dir(self, name, share):
        return self._shares_dir(name) / share

    def remove_smb_share(self, share, name=SMB_FOREST):
        self._set_share_section(name, share, None)
        folder = self._share_dir(name, share)
        if folder.exists():
            shutil.rmtree(folder)

    def _set_share_section(self, name, share, section):
        fdir = self._fdir(name)
        path = fdir / "etc" / "shares.conf"
        with self._lock():
            text = path.read_text() if path.exists() else ""
            blocks = [b for b in text.split("\n\n") if b.strip() and not b.lstrip().startswith("[%s]" % share)]
            if section:
                blocks.append(section.strip())
            tmp = path.with_name("shares.conf.tmp")
            tmp.write_text("\n\n".join(blocks) + ("\n" if blocks else ""))
            os.replace(str(tmp), str(path))
            if self._smb_pids(name):
                _run(["smbcontrol", "-s", str(fdir / "etc" / "smb.conf"), "smbd", "reload-config"], timeout=30)

    # ---------------------------------------------------------------- provisioning
    def _ensure_cert(self, forest):
        cert, key = pki.issue_cert(self.dir, "dc-" + forest.name, [forest.dc_hostname, forest.dns_domain], [forest.ip])
        return cert, key

    def _write_smb_conf(self, name, meta):
        fdir = self._fdir(name)
        cert, key = pki.issue_cert(self.dir, "dc-" + name, [meta["dc_hostname"], meta["dns_domain"]], [meta["ip"]])
        ca = pki.ensure_ca(self.dir)[0]
        smb = name == SMB_FOREST
        shares = fdir / "etc" / "shares.conf"
        for sub in ("run", "log", "cache", "state", "private", "run/ncalrpc", "state/usershares", "etc"):
            (fdir / sub).mkdir(parents=True, exist_ok=True)
        conf = """# Written by tests/lab/lab.py: a throw-away lab DC; every path stays under this folder.
[global]
    netbios name = DC1
    realm = {realm}
    workgroup = {netbios}
    server role = active directory domain controller
    server services = rpc, ldap, cldap, kdc
    prefork children = 2
    interfaces = {ip}
    bind interfaces only = yes
    private dir = {d}/private
    lock directory = {d}
    state directory = {d}/state
    cache directory = {d}/cache
    binddns dir = {d}/bind-dns
    pid directory = {d}/run
    ncalrpc dir = {d}/run/ncalrpc
    winbindd socket directory = {d}/run/winbindd
    ntp signd socket directory = {d}/run/ntp_signd
    smb passwd file = {d}/private/smbpasswd
    usershare path = {d}/state/usershares
    log file = {d}/log/samba.log
    logging = file
    max log size = 10000
    panic action =
    # ldap3 has no SASL sign/seal layer: without this, GSSAPI binds are refused (spec ad-lab.md).
    # It also makes Samba accept plaintext simple binds on 389: refusing those is the collection's job.
    ldap server require strong auth = no
    tls enabled = yes
    tls keyfile = {key}
    tls certfile = {cert}
    tls cafile = {ca}

[sysvol]
    path = {d}/state/sysvol
    read only = No

[netlogon]
    path = {d}/state/sysvol/{dns}/scripts
    read only = No
{shares}""".format(realm=meta["realm"], netbios=meta["netbios"], ip=meta["ip"], d=fdir, key=key, cert=cert, ca=ca,
                   dns=meta["dns_domain"],
                   shares="\n# file shares of the tests (Lab.smb_share)\ninclude = %s\n" % shares if smb else "")
        if smb and not shares.exists():
            shares.write_text("")
        (fdir / "etc" / "smb.conf").write_text(conf)

    def _write_krb5_conf(self, name, meta):
        realm, ip, dns = meta["realm"], meta["ip"], meta["dns_domain"]
        text = """# Written by tests/lab/lab.py: this forest's KDC only, no DNS.
[libdefaults]
    default_realm = {realm}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
    dns_canonicalize_hostname = false
    udp_preference_limit = 0
    default_ccache_name = FILE:{d}/ccache-default

[realms]
    {realm} = {{
        kdc = {ip}
        admin_server = {ip}
        kpasswd_server = {ip}
    }}

[domain_realm]
    .{dns} = {realm}
    {dns} = {realm}
    {ip} = {realm}
""".format(realm=realm, ip=ip, dns=dns, d=self._fdir(name))
        (self._fdir(name) / "krb5.conf").write_text(text)

    def _ldbmodify(self, name, ldif, schema=False):
        fdir = self._fdir(name)
        path = fdir / "tmp.ldif"
        path.write_text(ldif)
        args = ["ldbmodify", "-H", str(fdir / "private" / "sam.ldb")]
        if schema:
            args.append("--option=dsdb:schema update allowed=true")
        try:
            return _run(args + [str(path)])
        finally:
            path.unlink()

    def _ldbadd(self, name, ldif, batch=False):
        """ldbadd of a whole LDIF in one transaction against sam.ldb (the DC may be running).

        batch: ldb's batch_mode (no per-operation sub-transaction; any failure cancels the whole
        transaction): 4-5x faster for bulk seeding; `samba-tool dbcheck` finds no errors after it.
        """
        fdir = self._fdir(name)
        path = fdir / "tmp-add.ldif"
        path.write_text(ldif)
        args = ["ldbadd", "-H", str(fdir / "private" / "sam.ldb")] + (["-o", "batch_mode:1"] if batch else [])
        try:
            return _run(args + [str(path)])
        finally:
            path.unlink()

    def _ldbsearch(self, name, base, filt, attrs, scope="sub"):
        fdir = self._fdir(name)
        out = _run(["ldbsearch", "-H", str(fdir / "private" / "sam.ldb"), "-b", base, "-s", scope, filt] + list(attrs)).stdout
        return parse_ldif(out)

    def _extend_schema(self, name, base):
        """msDS-ExternalDirectoryObjectId from Windows Server 2016's own schema, in two steps (spec)."""
        data = pathlib.Path(SCHEMA_2016_LDF).read_bytes().decode("latin-1").replace("\r\n", "\n")
        block = None
        for chunk in data.split("\n\n"):
            lines = [line for line in chunk.strip().split("\n") if line and not line.startswith("#")]
            if lines and lines[0].startswith("dn: CN=ms-DS-External-Directory-Object-Id,"):
                block = "\n".join(lines)
                break
        if block is None:
            raise LabError("msDS-ExternalDirectoryObjectId not found in " + SCHEMA_2016_LDF)
        update_now = "\n\ndn:\nchangetype: modify\nadd: schemaUpdateNow\nschemaUpdateNow: 1\n-\n"
        self._ldbmodify(name, block.replace("DC=X", base) + update_now, schema=True)
        self._ldbmodify(name, "dn: CN=Mail-Recipient,CN=Schema,CN=Configuration,%s\nchangetype: modify\n"
                              "add: mayContain\nmayContain: msDS-ExternalDirectoryObjectId\n-" % base + update_now, schema=True)

    def _mirror_windows_schema(self, name, base):
        """mS-DS-ConsistencyGuid as Windows defines it: not in the Global Catalog's partial attribute
        set and not indexed ("In Global Catalog: False", "Is Indexed: False",
        https://learn.microsoft.com/windows/win32/adschema/a-ms-ds-consistencyguid). Samba 4.17 leaves
        isMemberOfPartialAttributeSet unset (so false) and searchFlags 0; this makes both explicit and
        is checked at every ``up``, so a lab can never differ from Windows here. (Samba's Global
        Catalog port does not limit reads or filters to the partial attribute set: the code must not
        rely on that, and the tests check which connection searched the attribute.) Returns whether
        it changed anything."""
        dn = "CN=ms-DS-Consistency-Guid,CN=Schema,CN=Configuration," + base
        found = self._ldbsearch(name, dn, "(objectClass=attributeSchema)", ["isMemberOfPartialAttributeSet", "searchFlags"],
                                scope="base")
        attrs = found[0][1] if found else {}
        if attrs.get("ismemberofpartialattributeset") == ["FALSE"] and attrs.get("searchflags", ["0"]) == ["0"]:
            return False
        self._ldbmodify(name, "dn: %s\nchangetype: modify\nreplace: isMemberOfPartialAttributeSet\n"
                              "isMemberOfPartialAttributeSet: FALSE\n-\nreplace: searchFlags\nsearchFlags: 0\n-\n\n"
                              "dn:\nchangetype: modify\nadd: schemaUpdateNow\nschemaUpdateNow: 1\n-\n" % dn, schema=True)
        return True

    def _provision(self, name, schema_extension):
        realm, netbios = FORESTS[name][:2]
        ip = forest_ip(name)
        dns = realm.lower()
        base = ",".join("DC=" + p for p in dns.split("."))
        fdir = self._fdir(name)
        if fdir.exists():
            shutil.rmtree(fdir)
        fdir.mkdir(parents=True)
        _run([SYSTEM_PYTHON, SAMBA_TOOL, "domain", "provision", "--targetdir=%s" % fdir, "--realm=" + realm,
              "--domain=" + netbios, "--server-role=dc", "--dns-backend=NONE", "--adminpass=" + ADMIN_PASSWORD,
              "--host-name=dc1", "--option=interfaces=" + ip, "--option=bind interfaces only=yes"])
        meta = {"name": name, "realm": realm, "netbios": netbios, "dns_domain": dns, "ip": ip, "base_dn": base,
                "dc_hostname": "dc1." + dns, "admin_password": ADMIN_PASSWORD, "schema_extended": bool(schema_extension)}
        self._write_smb_conf(name, meta)
        self._write_krb5_conf(name, meta)
        if schema_extension:
            self._extend_schema(name, base)
        self._mirror_windows_schema(name, base)
        host = meta["dc_hostname"]
        # no dnsupdate service (no DNS): register the DC's LDAP/GC SPNs as samba_spnupdate would;
        # passwords of the lab never expire (the lab outlives the default 42 days).
        self._ldbmodify(name, """dn: {base}
changetype: modify
replace: maxPwdAge
maxPwdAge: -9223372036854775808
-
replace: minPwdAge
minPwdAge: 0
-

dn: CN=DC1,OU=Domain Controllers,{base}
changetype: modify
add: servicePrincipalName
servicePrincipalName: ldap/{host}
servicePrincipalName: ldap/{host}/{dns}
servicePrincipalName: ldap/{host}/{nb}
servicePrincipalName: ldap/DC1
servicePrincipalName: GC/{host}/{dns}
servicePrincipalName: HOST/{host}/{dns}
servicePrincipalName: HOST/{host}/{nb}
servicePrincipalName: RestrictedKrbHost/{host}
servicePrincipalName: RestrictedKrbHost/DC1
-

dn: CN=Administrator,CN=Users,{base}
changetype: modify
replace: userAccountControl
userAccountControl: {uac}
-
""".format(base=base, host=host, dns=dns, nb=netbios, uac=UAC_NORMAL | UAC_DONT_EXPIRE))
        self._ldbadd(name, """dn: OU=CloudGroups,{base}
objectClass: organizationalUnit
ou: CloudGroups
description: Groups written back from Entra ID

dn: OU=Staff,{base}
objectClass: organizationalUnit
ou: Staff
description: On-premises users (seeded)

dn: OU=Delegated,{base}
objectClass: organizationalUnit
ou: Delegated
description: Least-privilege tests delegate rights here

dn: CN={wb},CN=Users,{base}
objectClass: user
sAMAccountName: {wb}
userPrincipalName: {wb}@{dns}
displayName: Group writeback service account
userAccountControl: {uac}
unicodePwd:: {pw}
""".format(base=base, wb=WRITEBACK_USER, dns=dns, uac=UAC_NORMAL | UAC_DONT_EXPIRE, pw=_unicode_pwd(WRITEBACK_PASSWORD)))
        (fdir / "identities.json").write_text("[]")
        (fdir / "forest.json").write_text(json.dumps(meta, indent=2))
        self._seed_locked(name, DEFAULT_USERS, with_passwords=True)
        return meta

    # ---------------------------------------------------------------- seeding
    def seed(self, name, users=DEFAULT_USERS, with_passwords=False):
        """Make sure <name>-user0001..N exist in OU=Staff (only missing ones are added); returns stats.

        Users 1..DEFAULT_USERS always have the known password (Forest.user_password) and are
        enabled. Further users (bulk, for benchmarks) are created disabled without a password
        unless with_passwords: Samba derives Kerberos keys for every password (~15 ms/user).
        """
        with self._lock():
            return self._seed_locked(name, users, with_passwords)

    def _seed_locked(self, name, users, with_passwords):
        meta = self._meta(name)
        if meta is None:
            raise LabError("forest %s is not provisioned" % name)
        base, dns = meta["base_dn"], meta["dns_domain"]
        staff = "OU=Staff," + base
        existing = {attrs["samaccountname"][0].lower() for dummy, attrs in
                    self._ldbsearch(name, staff, "(objectClass=user)", ["sAMAccountName"], scope="one")}
        missing = [i for i in range(1, users + 1) if ("%s-user%04d" % (name, i)) not in existing]
        ident_path = self._fdir(name) / "identities.json"
        if not missing and ident_path.exists():
            try:
                if len(json.loads(ident_path.read_text())) == len(existing):
                    return {"forest": name, "added": 0, "seconds": 0.0, "rate_per_s": None, "users": len(existing)}
            except ValueError:
                pass
        started = time.monotonic()
        pw = _unicode_pwd(USER_PASSWORD)
        for start in range(0, len(missing), SEED_BATCH):
            chunk = []
            for i in missing[start:start + SEED_BATCH]:
                sam = "%s-user%04d" % (name, i)
                has_pw = with_passwords or i <= DEFAULT_USERS
                entry = ("dn: CN={sam},{staff}\nobjectClass: user\nsAMAccountName: {sam}\nuserPrincipalName: {sam}@{dns}\n"
                         "givenName: {given}\nsn: User{i:04d}\ndisplayName: {given} User {i:04d}\nmail: {sam}@{dns}\n"
                         "company: {nb}\n").format(sam=sam, staff=staff, dns=dns, i=i, given=name.capitalize(), nb=meta["netbios"])
                if has_pw:
                    entry += "userAccountControl: %d\nunicodePwd:: %s\n" % (UAC_NORMAL | UAC_DONT_EXPIRE, pw)
                else:
                    entry += "userAccountControl: %d\n" % (UAC_NORMAL | UAC_DISABLED)
                chunk.append(entry)
            self._ldbadd(name, "\n".join(chunk), batch=True)
        added_seconds = time.monotonic() - started
        identities = self._read_identities(name, meta)
        tmp = ident_path.with_name("identities.json.tmp")
        tmp.write_text(json.dumps(identities, indent=1))
        os.replace(str(tmp), str(ident_path))
        return {"forest": name, "added": len(missing), "seconds": round(added_seconds, 3),
                "rate_per_s": round(len(missing) / added_seconds, 1) if missing and added_seconds else None,
                "users": len(identities)}

    def _read_identities(self, name, meta):
        records = self._ldbsearch(name, "OU=Staff," + meta["base_dn"], "(&(objectClass=user)(objectCategory=person))",
                                  ["sAMAccountName", "userPrincipalName", "objectGUID", "objectSid", "userAccountControl"],
                                  scope="one")
        out = []
        for dn, attrs in records:
            sam = attrs["samaccountname"][0]
            guid = attrs["objectguid"][0]
            uac = int(attrs.get("useraccountcontrol", ["0"])[0])
            try:
                index = int(sam.rsplit("user", 1)[1])
            except (IndexError, ValueError):
                index = 0
            has_pw = index and (index <= DEFAULT_USERS or not uac & UAC_DISABLED)
            out.append({"sam_account_name": sam, "user_principal_name": attrs.get("userprincipalname", [None])[0],
                        "dn": dn, "object_guid": guid, "object_sid": attrs["objectsid"][0], "immutable_id": immutable_id(guid),
                        "domain": meta["dns_domain"], "forest": name, "enabled": not uac & UAC_DISABLED,
                        "password": USER_PASSWORD if has_pw else None})
        out.sort(key=lambda e: e["sam_account_name"].lower())
        return out

    # ---------------------------------------------------------------- snapshots
    def _snapshot_dir(self, name, snapshot):
        if name not in FORESTS:
            raise LabError("unknown forest %r (known: %s)" % (name, ", ".join(FORESTS)))
        if not SNAPSHOT_NAME.match(snapshot or ""):
            raise LabError("snapshot name %r: letters, digits, '.', '_' and '-' only, not starting with '.'" % snapshot)
        return self.dir / "snapshots" / name / snapshot

    def snapshots(self, name):
        """The snapshot names of a forest (sorted)."""
        folder = self.dir / "snapshots" / name
        return sorted(p.name for p in folder.iterdir() if SNAPSHOT_NAME.match(p.name)) if folder.is_dir() else []

    @staticmethod
    def _copy_tree(src, dst):
        """``cp -a --reflink=auto src dst`` into a temporary sibling, then renamed to ``dst`` (an
        older ``dst`` is removed only once the new copy is complete). Samba's files are copied as they
        are (sparse tdb/ldb files stay sparse, sockets of run/ are recreated by samba)."""
        tmp = dst.with_name(".%s.copying-%d" % (dst.name, os.getpid()))
        old = dst.with_name(".%s.old-%d" % (dst.name, os.getpid()))
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover)
        dst.parent.mkdir(parents=True, exist_ok=True)
        _run(["cp", "-a", "--reflink=auto", str(src), str(tmp)], timeout=3600)
        if dst.exists():
            os.rename(str(dst), str(old))
        os.rename(str(tmp), str(dst))
        if old.exists():
            shutil.rmtree(old)

    def _wait_released(self, name, timeout=30):
        """Wait until no process has a file of the forest's folder open (samba's prefork workers and
        helpers may outlive their master by a moment): only then is a copy of it consistent."""
        prefix = str(self._fdir(name)) + "/"
        deadline = time.monotonic() + timeout
        while True:
            holders = self._holders(prefix)
            if not holders:
                return
            if time.monotonic() > deadline:
                raise LabError("processes %s still hold files under %s open: not copying a DC in use" % (holders, prefix))
            time.sleep(0.2)

    @staticmethod
    def _holders(prefix):
        pids = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                fds = os.listdir("/proc/%s/fd" % pid)
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink("/proc/%s/fd/%s" % (pid, fd)).startswith(prefix):
                        pids.append(int(pid))
                        break
                except OSError:
                    continue
        return pids

    @staticmethod
    def _tree_bytes(path):
        total = 0
        for root, dummy, files in os.walk(str(path)):
            for fname in files:
                try:
                    total += os.lstat(os.path.join(root, fname)).st_blocks * 512
                except OSError:
                    continue
        return total

    def snapshot(self, name, snapshot):
        """Offline copy of a forest: stop its DC, copy its whole folder (sam.ldb and its partitions
        under private/, secrets, state/, etc/, forest.json, identities.json, ...) to
        <lab dir>/snapshots/<forest>/<snapshot> (replacing an older one of that name), start the DC
        again and wait until it is healthy (as ``up``). Only a stopped DC's files are a consistent
        copy: the DC is always stopped first. Returns what was done, with the seconds of each step."""
        target = self._snapshot_dir(name, snapshot)
        with self._lock():
            self.forest(name)  # provisioned
            began = time.monotonic()
            self.stop_forest(name)
            self._wait_released(name)
            stopped = time.monotonic()
            self._copy_tree(self._fdir(name), target)
            copied = time.monotonic()
            self._verify(self.start_forest(name))
            done = time.monotonic()
        return {"forest": name, "snapshot": snapshot, "path": str(target), "bytes": self._tree_bytes(target),
                "stop_s": round(stopped - began, 3), "copy_s": round(copied - stopped, 3),
                "start_s": round(done - copied, 3), "seconds": round(done - began, 3)}

    def restore(self, name, snapshot):
        """Put a forest back as it was at ``snapshot``: stop its DC, replace its folder with a copy of
        the snapshot (the snapshot stays for later restores), start the DC and wait until it is
        healthy. A snapshot belongs to this lab dir (its smb.conf names the forest's folder)."""
        source = self._snapshot_dir(name, snapshot)
        if not (source / "forest.json").exists():
            raise LabError("no snapshot %r of forest %s under %s (have: %s)"
                           % (snapshot, name, source.parent, ", ".join(self.snapshots(name)) or "none"))
        with self._lock():
            began = time.monotonic()
            self.stop_forest(name)
            self._wait_released(name)
            stopped = time.monotonic()
            self._copy_tree(source, self._fdir(name))
            copied = time.monotonic()
            forest = self.start_forest(name)
            self._verify(forest)
            done = time.monotonic()
        return {"forest": name, "snapshot": snapshot, "users": len(forest.identities),
                "stop_s": round(stopped - began, 3), "copy_s": round(copied - stopped, 3),
                "start_s": round(done - copied, 3), "seconds": round(done - began, 3)}

    # ---------------------------------------------------------------- lifecycle
    def up(self, forests=DEFAULT_FORESTS, schema_extension=True):
        """Provision (first time) and start the forests; reuse healthy running ones. Returns name -> Forest."""
        forests = tuple(forests)
        for name in forests:
            if name not in FORESTS:
                raise LabError("unknown forest %r (known: %s)" % (name, ", ".join(FORESTS)))
        with self._lock():
            pki.ensure_ca(self.dir)
            to_provision = []
            for name in forests:
                want = schema_extension and FORESTS[name][3]
                meta = self._meta(name)
                if meta is None:
                    to_provision.append((name, want))
                elif meta["ip"] != forest_ip(name):
                    raise LabError("forest %s was provisioned for %s, now asked for %s: run lab.py reset" % (name, meta["ip"], forest_ip(name)))
                elif bool(meta["schema_extended"]) != bool(want):
                    raise LabError("forest %s has schema_extended=%s, asked for %s: run lab.py reset" % (name, meta["schema_extended"], want))
            errors = []

            def provision(name, want):
                try:
                    self._provision(name, want)
                except Exception as exc:  # pylint: disable=broad-except
                    errors.append(exc)
            threads = [threading.Thread(target=provision, args=item) for item in to_provision]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
            for name in forests:
                self._mirror_windows_schema(name, self._meta(name)["base_dn"])  # labs provisioned before it too
            result = {}
            for name in forests:
                forest = self.forest(name)
                if not (self._pid(name) is not None and self._healthy(forest)):
                    if self._pid(name) is not None:
                        self.stop_forest(name)
                    forest = self.start_forest(name)
                    self._verify(forest)
                result[name] = forest
            return result

    def _verify(self, forest):
        has = self._schema_has_attribute(forest)
        if has != forest.schema_extended:
            raise LabError("forest %s: msDS-ExternalDirectoryObjectId in schema=%s, expected %s" % (forest.name, has, forest.schema_extended))
        forest.kinit()  # the KDC answers

    def down(self, forests=None):
        """Stop our DCs (all forests unless named). Returns the names stopped."""
        with self._lock():
            stopped = []
            for name in forests or FORESTS:
                if self.stop_forest(name):
                    stopped.append(name)
            return stopped

    def reset(self, forests=DEFAULT_FORESTS, schema_extension=True):
        """Stop, wipe and provision again (the lab CA and certificates are kept)."""
        with self._lock():
            for name in FORESTS:
                self.stop_forest(name)
                if self._fdir(name).exists():
                    shutil.rmtree(self._fdir(name))
                if self._shares_dir(name).exists():
                    shutil.rmtree(self._shares_dir(name))
        return self.up(forests, schema_extension)

    def status(self):
        out = {}
        for name in FORESTS:
            meta = self._meta(name)
            if meta is None:
                out[name] = {"provisioned": False, "running": False}
                continue
            forest = self.forest(name)
            pid = self._pid(name)
            healthy = pid is not None and self._healthy(forest)
            schema = None
            if healthy:
                try:
                    schema = self._schema_has_attribute(forest)
                except Exception:  # pylint: disable=broad-except
                    schema = None
            out[name] = {"provisioned": True, "running": pid is not None, "pid": pid, "ip": forest.ip,
                         "realm": forest.realm, "healthy": healthy, "schema_extended": schema if schema is not None else meta["schema_extended"],
                         "users": len(forest.identities), "dir": forest.dir}
        return out


def preflight(setup_sh=None):
    """What the machine lacks for the lab, one sentence each ([] when nothing): every file and tool
    the lab relies on must be present and come from a Debian package tools/setup.sh names in
    APT_PACKAGES (lab/preflight.py, which tools/setup.sh and tools/test.sh run with the system python)."""
    from lab import preflight as machine  # pylint: disable=import-outside-toplevel
    return machine.check(setup_sh or machine.SETUP_SH)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Samba AD lab for cloud_sync tests")
    parser.add_argument("command", choices=["up", "down", "status", "reset", "seed", "snapshot", "restore", "preflight"])
    parser.add_argument("name", nargs="?", help="snapshot/restore: the snapshot's name (<lab dir>/snapshots/<forest>/<name>)")
    parser.add_argument("--forest", action="append", choices=list(FORESTS), help="repeatable; default corp and fabrikam")
    parser.add_argument("--no-schema-extension", action="store_true", help="provision without msDS-ExternalDirectoryObjectId")
    parser.add_argument("--users", type=int, default=DEFAULT_USERS, help="seed: users per forest (incremental)")
    parser.add_argument("--with-passwords", action="store_true", help="seed: give bulk users the known password too (slow)")
    parser.add_argument("--lab-dir", default=None)
    args = parser.parse_args(argv)
    lab = Lab(args.lab_dir)
    forests = tuple(args.forest) if args.forest else DEFAULT_FORESTS
    started = time.monotonic()
    if args.command in ("up", "reset"):
        fn = lab.up if args.command == "up" else lab.reset
        result = fn(forests, schema_extension=not args.no_schema_extension)
        print(json.dumps({name: {"ip": f.ip, "realm": f.realm, "ldaps": f.ldaps_url(), "ca_file": f.ca_file,
                                 "krb5_conf": f.krb5_conf, "users": len(f.identities)} for name, f in result.items()}, indent=2))
    elif args.command == "down":
        print(json.dumps({"stopped": lab.down(args.forest)}))
    elif args.command == "status":
        print(json.dumps(lab.status(), indent=2))
    elif args.command == "preflight":
        problems = preflight()
        print(json.dumps({"ok": not problems, "problems": problems}, indent=2))
        if problems:
            return 1
    elif args.command == "seed":
        print(json.dumps([lab.seed(name, args.users, args.with_passwords) for name in forests], indent=2))
    elif args.command in ("snapshot", "restore"):
        if not args.name:
            parser.error("%s needs a snapshot name" % args.command)
        fn = lab.snapshot if args.command == "snapshot" else lab.restore
        print(json.dumps([fn(name, args.name) for name in (tuple(args.forest) if args.forest else ("corp",))], indent=2))
    print("%s took %.1f s" % (args.command, time.monotonic() - started), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
