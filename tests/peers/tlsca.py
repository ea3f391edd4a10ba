#!/usr/bin/python3
"""tlsca: a throwaway PKI for tokenmail's test peers, made at test time.

Writes PEM files into a directory:

  ca.pem                  the test CA (give it to tokenmail as tls_ca_file)
  server.pem, server.key  127.0.0.1, ::1 and localhost (SAN IP and DNS), signed by ca.pem
  wronghost.pem/.key      signed by ca.pem, but for wrong.example.net only
  untrusted-ca.pem        another CA, trusted by no one
  untrusted.pem/.key      127.0.0.1/localhost, signed by untrusted-ca.pem
  expired.pem/.key        127.0.0.1/localhost, signed by ca.pem, expired yesterday

plus, on request, RSA client certificates for JWT client assertions
(client_cert()). Keys are unencrypted; every file is mode 0600.

As a module:   paths = tlsca.make_pki(dir)        -> dict name -> path
               cert, key = tlsca.client_cert(dir, "app")
As a script:   tlsca.py DIR [--client NAME]...     (prints "name path" lines)
"""
import datetime
import ipaddress
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK_NAMES = ["localhost"]
LOOPBACK_IPS = ["127.0.0.1", "::1"]


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tokenmail tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def rsa_key(bits=2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def make_ca(cn="tokenmail test CA"):
    """A self-signed CA: (certificate, key)."""
    key = _ec_key()
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_server_cert(ca, dns=LOOPBACK_NAMES, ips=LOOPBACK_IPS, cn=None, expired=False):
    """A TLS server certificate signed by ca = (cert, key): (certificate, key)."""
    ca_cert, ca_key = ca
    key = _ec_key()
    now = _now()
    if expired:
        start, end = now - datetime.timedelta(days=3), now - datetime.timedelta(days=1)
    else:
        start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=7)
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder()
            .subject_name(_name(cn or (dns[0] if dns else ips[0])))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def make_client_cert(cn="tokenmail test app", bits=2048):
    """A self-signed RSA certificate as registered on an Entra app: (certificate, key)."""
    key = rsa_key(bits)
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return cert, key


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key, pkcs1=False):
    fmt = serialization.PrivateFormat.PKCS8
    if pkcs1:
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def _write(directory, name, data):
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)
    return path


def write_pair(directory, name, pair, pkcs1=False):
    """Write NAME.pem and NAME.key; returns (cert path, key path)."""
    cert, key = pair
    return (_write(directory, name + ".pem", cert_pem(cert)),
            _write(directory, name + ".key", key_pem(key, pkcs1)))


def make_pki(directory):
    """Create the CA and server certificates described above; dict name -> path."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    ca = make_ca()
    other = make_ca("untrusted test CA")
    paths = {"ca": _write(directory, "ca.pem", cert_pem(ca[0])),
             "untrusted-ca": _write(directory, "untrusted-ca.pem", cert_pem(other[0]))}
    for name, pair in (("server", make_server_cert(ca)),
                       ("wronghost", make_server_cert(ca, dns=["wrong.example.net"], ips=[])),
                       ("untrusted", make_server_cert(other)),
                       ("expired", make_server_cert(ca, expired=True))):
        paths[name], paths[name + "-key"] = write_pair(directory, name, pair)
    return paths


def client_cert(directory, name="client", pkcs1=False, bits=2048):
    """An RSA client certificate NAME.pem and its key NAME.key (PKCS#8, or
    PKCS#1 with pkcs1=True) in directory: (cert path, key path)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return write_pair(directory, name, make_client_cert("tokenmail test " + name, bits), pkcs1)


def main(argv):
    if len(argv) < 2 or argv[1].startswith("-"):
        print("usage: tlsca.py DIR [--client NAME]...", file=sys.stderr)
        return 64
    directory = argv[1]
    paths = make_pki(directory)
    rest = argv[2:]
    while rest:
        if rest[0] != "--client" or len(rest) < 2:
            print("tlsca.py: unexpected argument %r" % rest[0], file=sys.stderr)
            return 64
        paths[rest[1]], paths[rest[1] + "-key"] = client_cert(directory, rest[1])
        rest = rest[2:]
    for name in sorted(paths):
        print(name, paths[name])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
