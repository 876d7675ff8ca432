"""HTTPS with --tls-cert/--tls-key: a certificate made at test time (openssl), a client that
verifies it, the API over TLS (appends, reads, keep-alive, big bodies), and a plain-HTTP
client on the TLS port getting nowhere."""
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import tempfile

from harness import Server, Skip, check


def make_cert(d):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def test_https_round_trip():
    if not shutil.which("openssl"):
        raise Skip("openssl is not installed")
    d = tempfile.mkdtemp(prefix="annals-tls-")
    try:
        cert, key = make_cert(d)
        with Server(extra=["--tls-cert", cert, "--tls-key", key]) as s:
            ctx = ssl.create_default_context(cafile=cert)
            conn = http.client.HTTPSConnection("127.0.0.1", s.port, context=ctx, timeout=10)
            conn.request("GET", "/health")
            r = conn.getresponse()
            check(r.status == 200 and b'"ok"' in r.read(), "health over TLS")
            big = "x" * 200000  # spans many TLS records both ways
            body = '{"events":[{"type":"t","data":"%s"}]}' % big
            for i in range(3):  # one keep-alive connection
                conn.request("POST", "/v1/databases/default/streams/tls/events", body,
                             {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                check(r.status == 201, f"append {i}: {r.status}")
            conn.request("GET", "/v1/databases/default/streams/tls/events")
            r = conn.getresponse()
            data = r.read()
            check(r.status == 200 and data.count(big.encode()) == 3, "read back over TLS")
            conn.close()
            # plain HTTP on the TLS port: no HTTP answer
            raw = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            raw.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            try:
                got = raw.recv(100)
            except OSError:
                got = b""
            raw.close()
            check(not got.startswith(b"HTTP/1.1 200"), f"plain HTTP answered: {got!r}")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_bad_certificate_refuses_to_start():
    d = tempfile.mkdtemp(prefix="annals-tls-")
    try:
        bogus = os.path.join(d, "bogus.pem")
        with open(bogus, "w") as f:
            f.write("not a certificate\n")
        s = Server(extra=["--tls-cert", bogus, "--tls-key", bogus], start=False)
        try:
            check(not s.try_start(timeout=5), "started with a bogus certificate")
            check("certificate" in s.log(), f"log: {s.log()[-300:]}")
        finally:
            s.cleanup()
    finally:
        shutil.rmtree(d, ignore_errors=True)
