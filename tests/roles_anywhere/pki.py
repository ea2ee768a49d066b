"""Generates the test PKI for the Roles Anywhere tests into a directory.

A root CA (the trust anchor), an intermediate CA, and leaf certificates with keys of every
supported type and encoding, plus broken cases. Python's `cryptography` makes the keys and
certificates; `openssl` command encrypts the scrypt and AES-128 PKCS#8 variants, which
`cryptography` does not write. Usage: python pki.py DIR
"""

import datetime
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

PASSPHRASE = b"correct horse battery staple"
NOW = datetime.datetime.now(datetime.timezone.utc)


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def cert(subject_key, cn, issuer_key, issuer_cn, ca, not_before=None, not_after=None):
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(name(issuer_cn))
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - datetime.timedelta(days=1))
        .not_valid_after(not_after or NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = dict(digital_signature=True, key_cert_sign=True, crl_sign=True)
    else:
        usage = dict(digital_signature=True, key_cert_sign=False, crl_sign=False)
    builder = builder.add_extension(
        x509.KeyUsage(content_commitment=False, key_encipherment=False, data_encipherment=False,
                      key_agreement=False, encipher_only=False, decipher_only=False, **usage),
        critical=True,
    )
    algorithm = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(issuer_key, algorithm)


def pem(c):
    return c.public_bytes(serialization.Encoding.PEM)


def key_pem(key, fmt, encryption=serialization.NoEncryption()):
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)


def openssl_pkcs8(src, dst, *cipher_args):
    subprocess.run(
        ["openssl", "pkcs8", "-topk8", "-in", str(src), "-out", str(dst),
         "-passout", "pass:" + PASSPHRASE.decode(), *cipher_args],
        check=True, capture_output=True,
    )


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = cert(root_key, "Test Root CA", root_key, "Test Root CA", ca=True)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = cert(inter_key, "Test Intermediate CA", root_key, "Test Root CA", ca=True)
    (out / "root.crt").write_bytes(pem(root))
    (out / "intermediate.crt").write_bytes(pem(inter))

    other_root_key = ec.generate_private_key(ec.SECP256R1())
    (out / "other-root.crt").write_bytes(pem(cert(other_root_key, "Other Root", other_root_key, "Other Root", ca=True)))

    pkcs1 = serialization.PrivateFormat.TraditionalOpenSSL  # RSA PRIVATE KEY / EC PRIVATE KEY (SEC1)
    pkcs8 = serialization.PrivateFormat.PKCS8

    def leaf(label, key, issuer=(inter_key, "Test Intermediate CA"), **validity):
        c = cert(key, "leaf " + label, issuer[0], issuer[1], ca=False, **validity)
        (out / f"{label}.crt").write_bytes(pem(c))
        return c

    keys = {
        "rsa2048": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "rsa4096": rsa.generate_private_key(public_exponent=65537, key_size=4096),
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
    }
    for label, key in keys.items():
        leaf(label, key)
        (out / f"{label}.pkcs8.pem").write_bytes(key_pem(key, pkcs8))
        (out / f"{label}.traditional.pem").write_bytes(key_pem(key, pkcs1))
        openssl_pkcs8(out / f"{label}.pkcs8.pem", out / f"{label}.pkcs8-pbkdf2-aes256.pem", "-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA256")
        openssl_pkcs8(out / f"{label}.pkcs8.pem", out / f"{label}.pkcs8-scrypt-aes256.pem", "-v2", "aes-256-cbc", "-scrypt")
        openssl_pkcs8(out / f"{label}.pkcs8.pem", out / f"{label}.pkcs8-pbkdf2-aes128.pem", "-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA256")

    # `openssl ecparam -genkey` writes an EC PARAMETERS block before the key.
    params = subprocess.run(["openssl", "ecparam", "-name", "prime256v1"], check=True, capture_output=True).stdout
    (out / "p256.with-params.pem").write_bytes(params + (out / "p256.traditional.pem").read_bytes())
    # A bundle: leaf then intermediate in one file.
    (out / "p384.bundle.crt").write_bytes((out / "p384.crt").read_bytes() + pem(inter))
    # A leaf issued straight by the root: no intermediates to send.
    direct = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf("direct", direct, issuer=(root_key, "Test Root CA"))
    (out / "direct.pkcs8.pem").write_bytes(key_pem(direct, pkcs8))

    # Broken cases.
    leaf("expired", keys["p256"], not_before=NOW - datetime.timedelta(days=30), not_after=NOW - datetime.timedelta(days=1))
    leaf("future", keys["p256"], not_before=NOW + datetime.timedelta(days=1), not_after=NOW + datetime.timedelta(days=30))
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    leaf("rsa1024", small)
    (out / "rsa1024.pkcs8.pem").write_bytes(key_pem(small, pkcs8))
    ed = ed25519.Ed25519PrivateKey.generate()
    leaf("ed25519", ed)
    (out / "ed25519.pkcs8.pem").write_bytes(key_pem(ed, pkcs8))
    other_key = ec.generate_private_key(ec.SECP256R1())
    (out / "other-p256.pkcs8.pem").write_bytes(key_pem(other_key, pkcs8))
    untrusted_key = ec.generate_private_key(ec.SECP256R1())
    leaf("untrusted", untrusted_key, issuer=(other_root_key, "Other Root"))
    (out / "untrusted.pkcs8.pem").write_bytes(key_pem(untrusted_key, pkcs8))
    (out / "garbage.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    (out / "passphrase.txt").write_bytes(PASSPHRASE + b"\n")


if __name__ == "__main__":
    main(sys.argv[1])
