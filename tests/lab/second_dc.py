# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A second domain controller joined to a lab forest (``samba-tool domain join ... DC``), for failover
and replication tests. Built on lab.py's public API (Lab, Forest, pki); lab.py itself is not changed.

    dc2 = SecondDC(lab, 'corp', ip='127.0.0.35')
    dc2.join()              # once: joins the forest (a few seconds), writes its own smb.conf
    dc2.start()             # its samba on dc2.ip (LDAPS with a lab-CA certificate for that IP)
    dc2.replicate_from_first()   # pull the domain partition from the forest's first DC (dc2's own drepl)
    dc2.push_to_first()          # make the first DC pull from dc2 (samba-tool drs replicate --local)
    dc2.stop()

Everything stays under ``<lab dir>/<forest>-dc2/`` (the smb.conf the join writes, which names
/var/log/samba, is replaced): no /etc/hosts entry. Replication is run on demand with
``samba-tool drs replicate <dest IP> <source IP> <NC> --local``, naming both DCs by IP, so no
``<NTDS Settings objectGUID>._msdcs.<forest>`` name has to resolve (that would need DNS or
/etc/hosts: Samba's ``file`` resolver, which reads the ``resolv:host file`` option, is rejected by
the Debian build as a ``name resolve order`` value). The ``dns_hosts`` file written beside it
records those names for whoever debugs the DC; Samba does not read it. The first DC's process
runs no ``drepl`` service (lab.py's smb.conf), so both directions are explicit ``--local`` runs.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import shutil
import pathlib
import signal
import socket
import time
import uuid

from lab import pki
from lab.lab import SAMBA, SAMBA_TOOL, LabError, _run, _system_env


class SecondDC(object):
    def __init__(self, lab, forest_name='corp', ip='127.0.0.35', netbios='DC2'):
        self.lab = lab
        self.forest = lab.forest(forest_name)
        self.forest_name = forest_name
        self.ip = ip
        self.netbios = netbios
        self.hostname = '%s.%s' % (netbios.lower(), self.forest.dns_domain)
        self.dir = pathlib.Path(lab.dir) / ('%s-%s' % (forest_name, netbios.lower()))
        self.conf = self.dir / 'etc' / 'smb.conf'
        self.hosts_file = self.dir / 'dns_hosts'
        self.first_conf = pathlib.Path(self.forest.dir) / 'etc' / 'smb.conf'

    # ------------------------------------------------------------------ helpers
    def _env(self):
        return _system_env({'KRB5_CONFIG': self.forest.krb5_conf})

    def _path_options(self):
        d = self.dir
        return {
            'netbios name': self.netbios, 'realm': self.forest.realm, 'workgroup': self.forest.netbios,
            'interfaces': self.ip, 'bind interfaces only': 'yes',
            'private dir': d / 'private', 'lock directory': d, 'state directory': d / 'state',
            'cache directory': d / 'cache', 'binddns dir': d / 'bind-dns', 'pid directory': d / 'run',
            'ncalrpc dir': d / 'run' / 'ncalrpc', 'winbindd socket directory': d / 'run' / 'winbindd',
            'ntp signd socket directory': d / 'run' / 'ntp_signd', 'smb passwd file': d / 'private' / 'smbpasswd',
            'usershare path': d / 'state' / 'usershares', 'log file': d / 'log' / 'samba.log', 'logging': 'file',
            'panic action': '', 'resolv:host file': self.hosts_file,
        }

    def _ntds_guid(self, ip):
        """objectGUID of the NTDS Settings object of the DC answering on ``ip`` (its rootDSE dsServiceName)."""
        import ldap3  # the virtualenv's
        import ssl
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=self.forest.ca_file)
        server = ldap3.Server(ip, port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=5)
        conn = ldap3.Connection(server, self.forest.admin_upn, self.forest.admin_password, auto_bind=True, receive_timeout=10)
        try:
            conn.search('', '(objectClass=*)', search_scope=ldap3.BASE, attributes=['dsServiceName'])
            service = conn.response[0]['raw_attributes']['dsServiceName'][0].decode('utf-8')
            conn.search(service, '(objectClass=*)', search_scope=ldap3.BASE, attributes=['objectGUID'])
            return str(uuid.UUID(bytes_le=bytes(conn.response[0]['raw_attributes']['objectGUID'][0])))
        finally:
            conn.unbind()

    def _write_hosts(self, dc2_guid=None):
        lines = ['A %s %s' % (self.forest.dc_hostname, self.forest.ip), 'A %s %s' % (self.forest.dns_domain, self.forest.ip),
                 'A %s %s' % (self.hostname, self.ip)]
        try:
            lines.append('CNAME %s._msdcs.%s %s' % (self._ntds_guid(self.forest.ip), self.forest.dns_domain, self.forest.dc_hostname))
        except Exception:  # pylint: disable=broad-except
            pass  # the first DC is down: keep what the file had for it
        if dc2_guid:
            lines.append('CNAME %s._msdcs.%s %s' % (dc2_guid, self.forest.dns_domain, self.hostname))
        old = self.hosts_file.read_text().splitlines() if self.hosts_file.exists() else []
        for line in old:
            if line.startswith('CNAME ') and line.split()[2] not in ' '.join(lines):
                lines.append(line)
        self.hosts_file.parent.mkdir(parents=True, exist_ok=True)
        self.hosts_file.write_text('\n'.join(lines) + '\n')

    def _write_conf(self):
        cert, key = pki.issue_cert(self.lab.dir, 'dc-%s-%s' % (self.forest_name, self.netbios.lower()),
                                   [self.hostname], [self.ip])
        ca = pki.ensure_ca(self.lab.dir)[0]
        for sub in ('etc', 'run', 'log', 'cache', 'state', 'private', 'run/ncalrpc', 'state/usershares'):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        opts = self._path_options()
        opts.update({'server role': 'active directory domain controller',
                     'server services': 'rpc, ldap, cldap, kdc, drepl', 'prefork children': '2',
                     'ldap server require strong auth': 'no', 'tls enabled': 'yes', 'tls keyfile': key,
                     'tls certfile': cert, 'tls cafile': ca, 'max log size': '10000'})
        text = '# Written by tests/lab/second_dc.py: a throw-away second DC; every path stays under this folder.\n[global]\n'
        text += ''.join('    %s = %s\n' % (k, v) for k, v in opts.items())
        text += '\n[sysvol]\n    path = %s/state/sysvol\n    read only = No\n' % self.dir
        text += '\n[netlogon]\n    path = %s/state/sysvol/%s/scripts\n    read only = No\n' % (self.dir, self.forest.dns_domain)
        self.conf.write_text(text)

    def joined(self):
        """True when this folder holds a join to the forest as it is now (a re-provisioned forest has a new first DC)."""
        marker = self.dir / 'joined.json'
        if not ((self.dir / 'private' / 'sam.ldb').exists() and self.conf.exists() and marker.exists()):
            return False
        return json.loads(marker.read_text()).get('first_dc') == self._ntds_guid(self.forest.ip)

    # ------------------------------------------------------------------ life cycle
    def join(self):
        """Join the forest as a DC (skipped when already joined). Needs the first DC running."""
        if self.joined():
            return self
        self.stop()
        if self.dir.exists():
            shutil.rmtree(str(self.dir))  # a join to an earlier incarnation of the forest
        self.lab._ensure_loopback(self.ip)  # pylint: disable=protected-access
        self._write_hosts()
        options = []
        for key, value in self._path_options().items():
            options.append('--option=%s=%s' % (key, value))
        for sub in ('run', 'log', 'cache', 'state', 'private'):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        command = [SAMBA_TOOL, 'domain', 'join', self.forest.dns_domain, 'DC', '--server=%s' % self.forest.ip,
                   '-U', '%s\\%s' % (self.forest.netbios, self.forest.admin_user), '--password=%s' % self.forest.admin_password,
                   '--realm=%s' % self.forest.realm, '--use-kerberos=off', '--targetdir=%s' % self.dir,
                   '--dns-backend=NONE'] + options
        try:
            _run(command, env=self._env(), timeout=300)
        except LabError:
            # Seen once when re-joining over an earlier join's account: the first DC's LDAP child
            # died mid-join. Restart the first DC and try once more.
            self.lab.stop_forest(self.forest_name)
            self.lab.start_forest(self.forest_name)
            shutil.rmtree(str(self.dir), ignore_errors=True)
            for sub in ('run', 'log', 'cache', 'state', 'private'):
                (self.dir / sub).mkdir(parents=True, exist_ok=True)
            self._write_hosts()
            _run(command, env=self._env(), timeout=300)
        self._write_conf()  # replaces the one join wrote (which names system folders such as /var/log/samba)
        (self.dir / 'joined.json').write_text(json.dumps({'first_dc': self._ntds_guid(self.forest.ip)}))
        return self

    def _pid(self):
        pid_file = self.dir / 'run' / 'samba.pid'
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            fds = os.listdir('/proc/%d/fd' % pid)
        except OSError:
            return None
        for fd in fds:
            try:
                if os.readlink('/proc/%d/fd/%s' % (pid, fd)) == str(pid_file):
                    return pid
            except OSError:
                continue
        return None

    def _port_open(self, port=636):
        try:
            with socket.create_connection((self.ip, port), timeout=0.5):
                return True
        except OSError:
            return False

    def start(self, timeout=90):
        self.lab._ensure_loopback(self.ip)  # pylint: disable=protected-access
        if self._pid() is None:
            pid_file = self.dir / 'run' / 'samba.pid'
            if pid_file.exists():
                pid_file.unlink()
            if self._port_open():
                raise LabError('%s:636 is in use by a process that is not this second DC' % self.ip)
            _run([SAMBA, '-s', str(self.conf), '-D', '-M', 'prefork'], env=self._env(), timeout=60)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                guid = self._ntds_guid(self.ip)
            except Exception:  # pylint: disable=broad-except
                time.sleep(0.3)
                continue
            self._write_hosts(guid)
            return self
        log = self.dir / 'log' / 'samba.log'
        raise LabError('second DC on %s did not answer within %ss:\n%s'
                       % (self.ip, timeout, log.read_text(errors='replace')[-3000:] if log.exists() else ''))

    def stop(self, timeout=30):
        pid = self._pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pathlib.Path('/proc/%d' % pid).exists():
            try:
                if pathlib.Path('/proc/%d/stat' % pid).read_text().split(')')[-1].split()[0] == 'Z':
                    break
            except OSError:
                break
            time.sleep(0.1)
        else:
            if pathlib.Path('/proc/%d' % pid).exists():
                os.kill(pid, signal.SIGKILL)
        while time.monotonic() < deadline and self._port_open():
            time.sleep(0.1)
        return True

    # ------------------------------------------------------------------ replication
    def _replicate(self, dest, source, conf, local):
        args = [SAMBA_TOOL, 'drs', 'replicate', dest, source, self.forest.base_dn, '-s', str(conf),
                '-U', '%s\\%s' % (self.forest.netbios, self.forest.admin_user), '--password=%s' % self.forest.admin_password,
                '--use-kerberos=off']
        if local:
            args.append('--local')
        return _run(args, env=self._env(), timeout=120).stdout

    def replicate_from_first(self):
        """dc2 pulls the domain partition from the first DC now (instead of at its next periodic run)."""
        return self._replicate(self.ip, self.forest.ip, self.conf, local=True)

    def push_to_first(self):
        """The first DC pulls the domain partition from dc2 (its database changed locally; it has no drepl)."""
        return self._replicate(self.forest.ip, self.ip, self.first_conf, local=True)
