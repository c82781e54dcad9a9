# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's own certificate authority.

Every TLS server of the test lab (the Samba DCs, the Graph emulator) presents a certificate
issued by one lab CA, valid for the server's DNS names *and* its IP addresses, so clients
connect by IP with certificate validation on and only the lab CA file as trust anchor.

Files live under the lab directory (``default_lab_dir()``)::

    <lab_dir>/ca/ca.crt, ca.key              the lab CA (created once, reused)
    <lab_dir>/other-ca/ca.crt, ca.key        an unrelated CA (for "wrong CA is refused" tests)
    <lab_dir>/certs/<name>.crt, <name>.key   server certificates

All functions are idempotent and safe to call from several processes at once (a file lock
serialises creation). Keys are written with mode 0600 (Samba refuses a readable key file).
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import datetime
import fcntl
import ipaddress
import os
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

CA_DAYS = 3650
_RENEW_MARGIN = datetime.timedelta(days=2)


def default_lab_dir():
    """The lab directory: $CLOUDSYNC_LAB_DIR, else <repo>/.lab (git-ignored)."""
    env = os.environ.get("CLOUDSYNC_LAB_DIR")
    if env:
        return pathlib.Path(env).resolve()
    return REPO_ROOT / ".lab"


def _lab(lab_dir):
    return pathlib.Path(lab_dir) if lab_dir is not None else default_lab_dir()


@contextlib.contextmanager
def _locked(lab_dir):
    lab_dir.mkdir(parents=True, exist_ok=True)
    with open(lab_dir / ".pki.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _write(path, data, mode):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(str(tmp), mode)
    os.replace(str(tmp), str(path))


def _new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_cert(path):
    return x509.load_pem_x509_certificate(pathlib.Path(path).read_bytes())


def _load_key(path):
    return serialization.load_pem_private_key(pathlib.Path(path).read_bytes(), password=None)


def _make_ca(directory, common_name):
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.exists() and key_path.exists():
        try:
            cert = _load_cert(cert_path)
            if cert.not_valid_after_utc - _RENEW_MARGIN > _now():
                return cert_path, key_path
        except ValueError:
            pass
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cloud_sync test lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def ensure_ca(lab_dir=None):
    """Create the lab CA once under <lab_dir>/ca/ and return (ca_cert_path, ca_key_path)."""
    lab_dir = _lab(lab_dir)
    with _locked(lab_dir):
        return _make_ca(lab_dir / "ca", "cloud_sync lab CA")


def other_ca(lab_dir=None):
    """A second CA, unrelated to the lab CA: (ca_cert_path, ca_key_path) under <lab_dir>/other-ca/.

    Use it as a client trust anchor to prove that a server of the lab is refused when the wrong
    CA is trusted, or through issue_untrusted_cert() for a server whose certificate the lab CA
    did not sign.
    """
    lab_dir = _lab(lab_dir)
    with _locked(lab_dir):
        return _make_ca(lab_dir / "other-ca", "cloud_sync unrelated CA")


def _sans(dns_names, ip_addresses):
    dns = sorted({str(d).lower() for d in (dns_names or ())})
    ips = sorted({ipaddress.ip_address(str(i)) for i in (ip_addresses or ())}, key=str)
    return dns, ips


def _cert_sans(cert):
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    dns = sorted({d.lower() for d in ext.get_values_for_type(x509.DNSName)})
    ips = sorted(set(ext.get_values_for_type(x509.IPAddress)), key=str)
    return dns, ips


def _issue(lab_dir, ca_dir, name, dns_names, ip_addresses, not_before, not_after, want_valid):
    if not name or "/" in name or name.startswith("."):
        raise ValueError("bad certificate name %r" % (name,))
    dns, ips = _sans(dns_names, ip_addresses)
    if not dns and not ips:
        raise ValueError("a server certificate needs at least one DNS name or IP address")
    ca_cert_path, ca_key_path = _make_ca(ca_dir, "cloud_sync lab CA" if ca_dir.name == "ca" else "cloud_sync unrelated CA")
    ca_cert = _load_cert(ca_cert_path)
    cert_path = lab_dir / "certs" / (name + ".crt")
    key_path = lab_dir / "certs" / (name + ".key")
    if cert_path.exists() and key_path.exists():
        try:
            cert = _load_cert(cert_path)
            now = _now()
            valid = cert.not_valid_before_utc <= now and now + _RENEW_MARGIN < cert.not_valid_after_utc
            same_issuer = (cert.issuer == ca_cert.subject and cert.extensions.get_extension_for_class(
                x509.AuthorityKeyIdentifier).value.key_identifier == ca_cert.extensions.get_extension_for_class(
                x509.SubjectKeyIdentifier).value.digest)
            if same_issuer and _cert_sans(cert) == (dns, ips) and (valid if want_valid else cert.not_valid_after_utc < now):
                return cert_path, key_path
        except (ValueError, x509.ExtensionNotFound):
            pass
    ca_key = _load_key(ca_key_path)
    key = _new_key()
    cn = dns[0] if dns else str(ips[0])
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    san = [x509.DNSName(d) for d in dns] + [x509.IPAddress(i) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cloud_sync test lab"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def issue_cert(lab_dir, name, dns_names, ip_addresses, days=825):
    """A server certificate signed by the lab CA: (cert_path, key_path) under <lab_dir>/certs/.

    The subjectAltName holds every DNS name and IP address given; the EKU is serverAuth. An
    existing certificate of that name is reused when it is still valid, signed by the current
    lab CA and has the same SANs; otherwise a new key and certificate replace it.
    """
    lab_dir = _lab(lab_dir)
    now = _now()
    with _locked(lab_dir):
        return _issue(lab_dir, lab_dir / "ca", name, dns_names, ip_addresses,
                      now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days), True)


def issue_expired_cert(lab_dir, name, dns_names, ip_addresses):
    """Like issue_cert() (signed by the lab CA, same SANs) but expired since yesterday."""
    lab_dir = _lab(lab_dir)
    now = _now()
    with _locked(lab_dir):
        return _issue(lab_dir, lab_dir / "ca", name, dns_names, ip_addresses,
                      now - datetime.timedelta(days=30), now - datetime.timedelta(days=1), False)


def issue_untrusted_cert(lab_dir, name, dns_names, ip_addresses, days=825):
    """Like issue_cert() but signed by other_ca(): a client trusting only the lab CA must refuse it."""
    lab_dir = _lab(lab_dir)
    now = _now()
    with _locked(lab_dir):
        return _issue(lab_dir, lab_dir / "other-ca", name, dns_names, ip_addresses,
                      now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days), True)


if __name__ == "__main__":  # pragma: no cover - manual use: print the lab CA path
    print(ensure_ca()[0])
