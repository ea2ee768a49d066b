"""A loopback server that plays IAM Roles Anywhere's CreateSession for the tests.

It checks requests the way the service does, with code written from the protocol
description and Python's `cryptography` for the crypto, never the refresher's own code:
it recomputes the canonical request and the string to sign from what it received, verifies
the signature against the certificate in X-Amz-X509 (RSA PKCS#1 v1.5 or ECDSA, SHA-256),
checks the serial in the credential scope, the signed headers, the date, the region, the
chain from the leaf through X-Amz-X509-Chain to the trust anchor, and the validity period.
A failed check answers 403 with a message, like the service; a good request gets 201 and
session credentials. Each request is appended to the log file as one JSON line.

Usage: python server.py --trust-anchor ROOT.crt --log FILE [--access-key-id ID]
                        [--fail-first N] [--fail-status STATUS] [--double-encode]
Prints the port it listens on as the first line of stdout. With --fail-first N, the first N
requests are answered with --fail-status (default 503) before any check, as an overloaded
service would; they are logged with the result "fault STATUS". With --double-encode, an
accepted request's credentials are sent as a JSON string instead of an object (as a broken
gateway might), so the answer is malformed but holds the secret key and session token.
"""

import argparse
import base64
import datetime
import hashlib
import json
import secrets
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

REQUIRED_HEADERS = {"content-type", "host", "x-amz-date", "x-amz-x509"}


class Reject(Exception):
    pass


def uri_encode(s):
    return urllib.parse.quote(s, safe="-_.~")


def verify_signature(cert, algorithm, signature, message):
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if algorithm != "AWS4-X509-RSA-SHA256":
                raise Reject(f"algorithm {algorithm} does not fit an RSA certificate")
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if algorithm != "AWS4-X509-ECDSA-SHA256":
                raise Reject(f"algorithm {algorithm} does not fit an EC certificate")
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            raise Reject("unsupported certificate key type")
    except InvalidSignature:
        raise Reject("Signature is invalid")


def verify_chain(leaf, intermediates, anchor):
    now = datetime.datetime.now(datetime.timezone.utc)
    for c in [leaf] + intermediates:
        if not (c.not_valid_before_utc <= now <= c.not_valid_after_utc):
            raise Reject(f"Certificate {c.subject.rfc4514_string()} is not valid at this time")
    current = leaf
    pool = list(intermediates)
    for _ in range(len(intermediates) + 1):
        try:
            current.verify_directly_issued_by(anchor)
            return
        except (ValueError, TypeError, InvalidSignature):
            pass
        for issuer in pool:
            try:
                current.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature):
                continue
            pool.remove(issuer)
            current = issuer
            break
        else:
            break
    raise Reject("Untrusted signing certificate")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        entry = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
        with self.server.lock:
            fault = self.server.faults_left > 0
            self.server.faults_left -= 1 if fault else 0
        # Each request is logged before it is answered: a client that exits on the answer
        # must find its request in the log.
        if fault:
            entry["result"] = f"fault {self.server.fail_status}"
            self.log_entry(entry)
            self.reply(self.server.fail_status, {"message": "injected fault"})
            return
        try:
            creds = self.check(body, entry)
        except Reject as e:
            entry["result"] = "rejected: " + str(e)
            self.log_entry(entry)
            self.reply(403, {"message": str(e)})
            return
        entry["result"] = "accepted"
        self.log_entry(entry)
        if self.server.double_encode:
            for item in creds["credentialSet"]:
                item["credentials"] = json.dumps(item["credentials"])
        self.reply(201, creds)

    def log_entry(self, entry):
        with self.server.lock:
            with open(self.server.log_path, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def check(self, body, entry):
        path, _, raw_query = self.path.partition("?")
        if path != "/sessions":
            raise Reject(f"unknown path {path}")
        query = urllib.parse.parse_qsl(raw_query, keep_blank_values=True)
        params = dict(query)
        for p in ("profileArn", "roleArn", "trustAnchorArn"):
            if p not in params:
                raise Reject(f"missing {p}")
        auth = self.headers.get("Authorization", "")
        algorithm, _, rest = auth.partition(" ")
        fields = dict(part.strip().split("=", 1) for part in rest.split(",") if "=" in part)
        credential = fields.get("Credential", "").split("/")
        if len(credential) != 5 or credential[3:] != ["rolesanywhere", "aws4_request"]:
            raise Reject("malformed credential scope")
        serial, date, region = credential[0], credential[1], credential[2]
        signed = fields.get("SignedHeaders", "").split(";")
        if signed != sorted(signed) or not REQUIRED_HEADERS <= set(signed):
            raise Reject(f"SignedHeaders must include {sorted(REQUIRED_HEADERS)}, sorted")
        if "X-Amz-X509-Chain" in self.headers and "x-amz-x509-chain" not in signed:
            raise Reject("x-amz-x509-chain is sent but not signed")
        amz_date = self.headers.get("X-Amz-Date", "")
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
        if abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) > 300:
            raise Reject("Signature expired: X-Amz-Date is more than 5 minutes from now")
        if date != amz_date[:8]:
            raise Reject("credential scope date does not match X-Amz-Date")
        anchor_region = params["trustAnchorArn"].split(":")[3]
        if region != anchor_region:
            raise Reject(f"credential scope region {region} is not the trust anchor's {anchor_region}")
        if self.headers.get("Content-Type") != "application/json":
            raise Reject("Content-Type must be application/json")

        canonical_query = "&".join(
            f"{k}={v}" for k, v in sorted((uri_encode(k), uri_encode(v)) for k, v in query)
        )
        canonical_headers = "".join(f"{h}:{self.headers.get(h, '').strip()}\n" for h in signed)
        canonical = "\n".join([
            "POST", path, canonical_query, canonical_headers, ";".join(signed),
            hashlib.sha256(body).hexdigest(),
        ])
        scope = f"{date}/{region}/rolesanywhere/aws4_request"
        to_sign = "\n".join([algorithm, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        entry["algorithm"] = algorithm
        entry["canonical_request"] = canonical

        leaf = x509.load_der_x509_certificate(base64.b64decode(self.headers["X-Amz-X509"], validate=True))
        if str(leaf.serial_number) != serial:
            raise Reject(f"credential serial {serial} is not the certificate's {leaf.serial_number}")
        chain_header = self.headers.get("X-Amz-X509-Chain")
        intermediates = [
            x509.load_der_x509_certificate(base64.b64decode(part, validate=True))
            for part in chain_header.split(",")
        ] if chain_header else []
        entry["intermediates"] = len(intermediates)
        try:
            signature = bytes.fromhex(fields.get("Signature", ""))
        except ValueError:
            raise Reject("Signature is not hex")
        verify_signature(leaf, algorithm, signature, to_sign.encode())
        verify_chain(leaf, intermediates, self.server.anchor)

        request = json.loads(body)
        duration = request.get("durationSeconds", 3600)
        if not isinstance(duration, int) or not 900 <= duration <= 43200:
            raise Reject("durationSeconds must be between 900 and 43200")
        entry["duration"] = duration
        expiration = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=duration)
        return {
            "credentialSet": [{
                "assumedRoleUser": {"arn": params["roleArn"] + "/session", "assumedRoleId": "AROATEST:session"},
                "credentials": {
                    "accessKeyId": self.server.access_key_id,
                    "secretAccessKey": "ra-secret-" + secrets.token_hex(16),
                    "sessionToken": "ra-session-token-" + secrets.token_hex(16),
                    "expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
                "packedPolicySize": 0,
                "roleArn": params["roleArn"],
                "sourceIdentity": leaf.subject.rfc4514_string(),
            }],
            "subjectArn": params["trustAnchorArn"].replace("trust-anchor", "subject"),
        }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trust-anchor", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--access-key-id", default="ASIAROLESANYWHERE")
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--fail-status", type=int, default=503)
    parser.add_argument("--double-encode", action="store_true")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.anchor = x509.load_pem_x509_certificate(open(args.trust_anchor, "rb").read())
    server.log_path = args.log
    server.access_key_id = args.access_key_id
    server.lock = threading.Lock()
    server.faults_left = args.fail_first
    server.fail_status = args.fail_status
    server.double_encode = args.double_encode
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
