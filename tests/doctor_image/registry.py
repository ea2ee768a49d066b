"""A loopback stand-in for an ECR registry endpoint's `GET /v2/`, over TLS, for the tests.

It makes a throwaway CA and a server certificate for the registry hostnames given (Python's
`cryptography`, never the refresher's code), writes the CA to DIR/ca.pem for SSL_CERT_FILE,
and serves HTTPS on 127.0.0.1 with Python's `ssl` (OpenSSL). `GET /v2/` answers 401 with a
Basic challenge unless the request carries `Authorization: Basic base64(USER:PASSWORD)`, then
200 `{}`, as ECR does. Each request's path and whether it was authorized go to DIR/requests.log.

Usage: python registry.py --dir DIR --password PASSWORD HOST [HOST...]
Prints the port it listens on as the first line of stdout.
"""

import argparse
import base64
import datetime
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(directory, hosts):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("doctor-image test CA"))
        .issuer_name(name("doctor-image test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name(hosts[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--user", default="AWS")
    parser.add_argument("hosts", nargs="+")
    args = parser.parse_args()
    directory = Path(args.dir)
    make_pki(directory, args.hosts)
    expected = "Basic " + base64.b64encode(f"{args.user}:{args.password}".encode()).decode()
    log = directory / "requests.log"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            authorized = self.headers.get("Authorization") == expected
            with log.open("a") as f:
                f.write(f"{self.command} {self.path} host={self.headers.get('Host')} authorized={authorized}\n")
            if self.path != "/v2/":
                self.answer(404, b'{"errors":[{"code":"NOT_FOUND"}]}')
            elif authorized:
                self.answer(200, b"{}")
            else:
                self.answer(401, b'{"errors":[{"code":"DENIED","message":"Not Authorized"}]}',
                            [("WWW-Authenticate", f'Basic realm="https://{args.hosts[0]}/",service="ecr.amazonaws.com"')])

        def answer(self, status, body, headers=()):
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
