"""SSRF rules of :mod:`api.voices.safe_fetch`, exercised against real local HTTP(S) servers.

Every refusal test also asserts that the local server saw no request: a broken check would
connect to it (the stub resolver maps names to 127.0.0.1, and literal forms spell 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from api.errors import InvalidRequestError, PayloadTooLargeError, PermissionDeniedError
from api.voices.safe_fetch import (
    IPAddress,
    SafeFetcher,
    is_public_address,
    parse_ipv4_literal,
)

BODY = b"RIFF-not-really-audio-" * 100


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests.append((self.path, self.headers.get("Host", "")))
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            if url.path == "/ok":
                self._send(200, BODY)
            elif url.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", q["to"])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif url.path == "/loop":
                self.send_response(302)
                self.send_header("Location", "/loop")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif url.path == "/big":  # no Content-Length: only the streaming cap can stop it
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                for _ in range(64):
                    self.wfile.write(b"x" * 65536)
            elif url.path == "/biglen":  # declares a huge body, sends a little
                self.send_response(200)
                self.send_header("Content-Length", str(50 * 1024 * 1024))
                self.end_headers()
                self.wfile.write(b"x" * 1000)
                self.wfile.flush()
                time.sleep(2)
            elif url.path == "/drip":  # every read is fast; only a total deadline stops this
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                for _ in range(100000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
            elif url.path == "/status":
                self._send(int(q["code"]), b"nope")
            else:
                self._send(404, b"missing")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "audio/wav")
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, ssl_ctx: ssl.SSLContext | None = None) -> None:
        super().__init__((host, 0), _Handler)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        if ssl_ctx is not None:
            self.socket = ssl_ctx.wrap_socket(self.socket, server_side=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.requests)


def _serve(server: _Server) -> Iterator[_Server]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    yield from _serve(_Server("127.0.0.1"))


@pytest.fixture
def server2() -> Iterator[_Server]:
    """A second 'internal' server on another loopback address."""
    yield from _serve(_Server("127.0.0.2"))


class StubResolver:
    """Maps names to fixed answers and counts lookups; unknown names fail like NXDOMAIN."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.table:
            raise OSError("NXDOMAIN")
        return self.table[host]


def only(*allowed: str) -> Callable[[IPAddress], bool]:
    """Test-only address policy: exactly these addresses are allowed."""
    ips = {ipaddress.ip_address(a) for a in allowed}
    return lambda ip: ip in ips


def fetcher(resolver: StubResolver | None = None, **kw: object) -> SafeFetcher:
    kw.setdefault("max_bytes", 1024 * 1024)
    kw.setdefault("timeout", 5.0)
    return SafeFetcher(resolver=resolver or StubResolver({}), **kw)  # type: ignore[arg-type]


# --- address policy ---------------------------------------------------------------------------

FORBIDDEN_ADDRESSES = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.0.1",
    "0.0.0.0",
    "0.1.2.3",
    "100.64.0.1",
    "192.0.0.170",
    "192.0.2.1",
    "198.18.0.1",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fc00::1",
    "fd00:ec2::254",
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "ff0e::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:0:7f00:1",
    "::127.0.0.1",
    "::10.0.0.1",
    "::8.8.8.8",
    "64:ff9b::127.0.0.1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::1",
    "2002:7f00:1::1",
    "2002:a9fe:a9fe::1",
    "2001::1",
    "2001:db8::1",
    "100::1",
]


@pytest.mark.parametrize("addr", FORBIDDEN_ADDRESSES)
def test_policy_refuses_non_global(addr: str) -> None:
    assert not is_public_address(ipaddress.ip_address(addr))


@pytest.mark.parametrize(
    "addr",
    ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"],
)
def test_policy_allows_global(addr: str) -> None:
    assert is_public_address(ipaddress.ip_address(addr))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("017700000001", "127.0.0.1"),
        ("169.254.43518", "169.254.169.254"),
        ("127.0.0.1.", "127.0.0.1"),
    ],
)
def test_legacy_ipv4_literals_parse(text: str, expected: str) -> None:
    assert parse_ipv4_literal(text) == ipaddress.IPv4Address(expected)


@pytest.mark.parametrize("text", ["256.0.0.1", "1.2.3.4.5", "09.1.1.1", "0x.1.2.300", "1.2.3.4294967296"])
def test_invalid_numeric_hosts_are_400(text: str) -> None:
    with pytest.raises(InvalidRequestError):
        parse_ipv4_literal(text)


def test_names_are_not_literals() -> None:
    assert parse_ipv4_literal("voices.example.com") is None
    assert parse_ipv4_literal("1.2.3.example") is None


# --- refused destinations never reach the server -------------------------------------------------

LITERAL_HOSTS = [
    "127.0.0.1",
    "2130706433",
    "0177.0.0.1",
    "0x7f.1",
    "127.1",
    "0x7f000001",
    "127.0.1",
    "0177.1",
    "0.0.0.0",
    "0",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::127.0.0.1]",
    "[::]",
    "[64:ff9b::7f00:1]",
    "[2002:7f00:1::]",
    "127.0.0.1.",
    "LOCALHOST",
]


@pytest.mark.parametrize("host", LITERAL_HOSTS)
def test_literal_forms_refused(server: _Server, host: str) -> None:
    resolver = StubResolver({"localhost": ["127.0.0.1"]})
    with pytest.raises(PermissionDeniedError) as info:
        fetcher(resolver).fetch(f"http://{host}:{server.port}/ok")
    assert info.value.status_code == 403
    assert "127.0.0.1" not in info.value.message
    assert server.count == 0
    if host != "LOCALHOST":
        assert resolver.calls == []  # literals are never handed to a resolver


@pytest.mark.parametrize(
    "answers",
    [[a] for a in FORBIDDEN_ADDRESSES]
    + [["8.8.8.8", "127.0.0.1"], ["127.0.0.1", "8.8.8.8"], ["fe80::1%eth0"]],
)
def test_resolved_forbidden_addresses_refused(server: _Server, answers: list[str]) -> None:
    resolver = StubResolver({"voices.test": answers})
    with pytest.raises(PermissionDeniedError):
        fetcher(resolver).fetch(f"http://voices.test:{server.port}/ok")
    assert server.count == 0


def test_resolved_loopback_refused_by_default_policy_https(server: _Server) -> None:
    resolver = StubResolver({"voices.test": ["127.0.0.1"]})
    with pytest.raises(PermissionDeniedError):
        fetcher(resolver).fetch(f"https://voices.test:{server.port}/ok")
    assert server.count == 0


@pytest.mark.parametrize(
    "url",
    [
        "ftp://voices.test/ok",
        "file:///etc/passwd",
        "gopher://voices.test/",
        "voices.test/ok",
        "http:///ok",
        "http://user:pw@voices.test/ok",
        "http://voices.test@127.0.0.1/ok",
        "http://voices.test\\@x/ok",
        "http://voices.test:99999/ok",
        "http://voices.test:0/ok",
        "http://voi ces.test/ok",
        "http://[::1/ok",
        "http://300.1.1.1/ok",
    ],
)
def test_malformed_urls_are_400(server: _Server, url: str) -> None:
    resolver = StubResolver({"voices.test": ["127.0.0.1"]})
    with pytest.raises(InvalidRequestError) as info:
        fetcher(resolver, address_policy=only("127.0.0.1")).fetch(url)
    assert info.value.status_code == 400
    assert server.count == 0


# --- the happy path (loopback explicitly allowed through the test-only policy seam) -------------


def test_fetch_works_and_connects_to_the_validated_ip(server: _Server) -> None:
    resolver = StubResolver({"voices.test": ["127.0.0.1"]})
    result = fetcher(resolver, address_policy=only("127.0.0.1")).fetch(f"http://voices.test:{server.port}/ok")
    assert result.content == BODY
    assert result.content_type == "audio/wav"
    # 'voices.test' does not exist in real DNS: success proves no second lookup happened
    assert resolver.calls == ["voices.test"]
    assert server.requests == [("/ok", f"voices.test:{server.port}")]


def test_dns_is_resolved_once(server: _Server) -> None:
    """A rebinding resolver (safe answer first, internal after) cannot redirect the connection."""

    class Rebinding(StubResolver):
        def __call__(self, host: str, port: int) -> list[str]:
            self.calls.append(host)
            return ["127.0.0.1"] if len(self.calls) == 1 else ["127.0.0.2"]

    resolver = Rebinding({})
    fetcher(resolver, address_policy=only("127.0.0.1")).fetch(f"http://voices.test:{server.port}/ok")
    assert resolver.calls == ["voices.test"]


# --- redirects ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{p2}/ok",
        "http://2130706434:{p2}/ok",
        "http://internal.test:{p2}/ok",
        "http://169.254.169.254/latest/",
    ],
)
def test_redirect_to_private_address_refused(server: _Server, server2: _Server, target: str) -> None:
    resolver = StubResolver({"voices.test": ["127.0.0.1"], "internal.test": ["127.0.0.2"]})
    to = target.format(p2=server2.port)
    with pytest.raises(PermissionDeniedError):
        fetcher(resolver, address_policy=only("127.0.0.1")).fetch(
            f"http://voices.test:{server.port}/redirect?to={to}"
        )
    assert server.count == 1  # the first hop was allowed
    assert server2.count == 0  # the internal server never saw the redirected request


def test_redirect_to_allowed_address_is_followed(server: _Server) -> None:
    resolver = StubResolver({"voices.test": ["127.0.0.1"], "cdn.test": ["127.0.0.1"]})
    to = f"http://cdn.test:{server.port}/ok"
    result = fetcher(resolver, address_policy=only("127.0.0.1")).fetch(
        f"http://voices.test:{server.port}/redirect?to={to}"
    )
    assert result.content == BODY
    assert result.url == to
    assert server.requests[-1] == ("/ok", f"cdn.test:{server.port}")


def test_redirect_count_is_capped(server: _Server) -> None:
    resolver = StubResolver({"voices.test": ["127.0.0.1"]})
    with pytest.raises(InvalidRequestError, match="too many"):
        fetcher(resolver, address_policy=only("127.0.0.1"), max_redirects=2).fetch(
            f"http://voices.test:{server.port}/loop"
        )
    assert server.count == 3


def test_redirect_off_allow_list_refused(server: _Server) -> None:
    resolver = StubResolver({"voices.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    with pytest.raises(PermissionDeniedError):
        fetcher(resolver, address_policy=only("127.0.0.1"), allowed_hosts=["voices.test"]).fetch(
            f"http://voices.test:{server.port}/redirect?to=http://other.test:{server.port}/ok"
        )
    assert [p for p, _ in server.requests] == [f"/redirect?to=http://other.test:{server.port}/ok"]


# --- allow-list ----------------------------------------------------------------------------------


def test_allow_list_enforced(server: _Server) -> None:
    resolver = StubResolver({"voices.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    f = fetcher(resolver, address_policy=only("127.0.0.1"), allowed_hosts=["Voices.Test"])
    with pytest.raises(PermissionDeniedError):
        f.fetch(f"http://other.test:{server.port}/ok")
    assert server.count == 0
    assert resolver.calls == []  # refused before any lookup
    assert f.fetch(f"http://voices.test:{server.port}/ok").content == BODY


# --- size and time caps --------------------------------------------------------------------------


def test_streamed_body_over_cap_is_413(server: _Server) -> None:
    resolver = StubResolver({"voices.test": ["127.0.0.1"]})
    t0 = time.monotonic()
    with pytest.raises(PayloadTooLargeError) as info:
        fetcher(resolver, address_policy=only("127.0.0.1"), max_bytes=100_000).fetch(
            f"http://voices.test:{server.port}/big"
        )
    assert info.value.status_code == 413
    assert time.monotonic() - t0 < 3


def test_declared_content_length_over_cap_is_413_before_reading(server: _Server) -> None:
    resolver = StubResolver({"voices.test": ["127.0.0.1"]})
    t0 = time.monotonic()
    with pytest.raises(PayloadTooLargeError):
        fetcher(resolver, address_policy=only("127.0.0.1"), max_bytes=100_000).fetch(
            f"http://voices.test:{server.port}/biglen"
        )
    assert time.monotonic() - t0 < 1.5  # did not wait for the (stalled) body


def test_total_deadline_not_per_read(server: _Server) -> None:
    resolver = StubResolver({"voices.test": ["127.0.0.1"]})
    t0 = time.monotonic()
    with pytest.raises(InvalidRequestError, match="timed out") as info:
        fetcher(resolver, address_policy=only("127.0.0.1"), timeout=1.0).fetch(
            f"http://voices.test:{server.port}/drip"
        )
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 2.0
    assert info.value.status_code == 400


def test_slow_dns_counts_against_the_deadline() -> None:
    def hanging(host: str, port: int) -> list[str]:
        time.sleep(5)
        return ["127.0.0.1"]

    t0 = time.monotonic()
    with pytest.raises(InvalidRequestError, match="timed out"):
        SafeFetcher(max_bytes=100, timeout=0.5, resolver=hanging).fetch("http://voices.test/ok")
    assert time.monotonic() - t0 < 1.5


def test_unreachable_and_unresolvable_are_400_without_details() -> None:
    closed = StubResolver({"voices.test": ["127.0.0.1"]})
    with pytest.raises(InvalidRequestError) as info:
        # port 1 on loopback: connection refused
        fetcher(closed, address_policy=only("127.0.0.1")).fetch("http://voices.test:1/ok")
    assert info.value.message == "The voice URL could not be reached."
    with pytest.raises(InvalidRequestError) as info:
        fetcher(StubResolver({})).fetch("http://nxdomain.test/ok")
    assert "resolved" in info.value.message
    with pytest.raises(InvalidRequestError, match="resolved"):
        fetcher(StubResolver({"empty.test": []})).fetch("http://empty.test/ok")


def test_http_error_status_is_400(server: _Server) -> None:
    resolver = StubResolver({"voices.test": ["127.0.0.1"]})
    with pytest.raises(InvalidRequestError, match="HTTP 500"):
        fetcher(resolver, address_policy=only("127.0.0.1")).fetch(
            f"http://voices.test:{server.port}/status?code=500"
        )


# --- TLS: pinned IP, but SNI and certificate checked against the host name ------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available")
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(crt),
            "-days",
            "1",
            "-subj",
            "/CN=voices.test",
            "-addext",
            "subjectAltName=DNS:voices.test",
        ],
        check=True,
        capture_output=True,
    )
    return key, crt


@pytest.fixture
def tls_server(cert: tuple[Path, Path]) -> Iterator[_Server]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert[1]), str(cert[0]))
    sni_seen: list[str | None] = []

    def _sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        sni_seen.append(name)

    ctx.sni_callback = _sni
    srv = _Server("127.0.0.1", ctx)
    srv.sni_seen = sni_seen  # type: ignore[attr-defined]
    yield from _serve(srv)


def _client_ctx(cert: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert[1]))


def test_https_pinned_ip_verifies_hostname(tls_server: _Server, cert: tuple[Path, Path]) -> None:
    resolver = StubResolver({"voices.test": ["127.0.0.1"]})
    f = fetcher(resolver, address_policy=only("127.0.0.1"), ssl_context=_client_ctx(cert))
    result = f.fetch(f"https://voices.test:{tls_server.port}/ok")
    assert result.content == BODY
    assert tls_server.sni_seen == ["voices.test"]  # type: ignore[attr-defined]
    assert tls_server.requests == [("/ok", f"voices.test:{tls_server.port}")]


def test_https_wrong_hostname_fails_verification(tls_server: _Server, cert: tuple[Path, Path]) -> None:
    resolver = StubResolver({"wrong.test": ["127.0.0.1"]})
    f = fetcher(resolver, address_policy=only("127.0.0.1"), ssl_context=_client_ctx(cert))
    with pytest.raises(InvalidRequestError, match="TLS") as info:
        f.fetch(f"https://wrong.test:{tls_server.port}/ok")
    assert info.value.status_code == 400
    assert tls_server.count == 0


def test_https_untrusted_certificate_fails(tls_server: _Server) -> None:
    resolver = StubResolver({"voices.test": ["127.0.0.1"]})
    f = fetcher(resolver, address_policy=only("127.0.0.1"))  # system trust store: self-signed refused
    with pytest.raises(InvalidRequestError, match="TLS"):
        f.fetch(f"https://voices.test:{tls_server.port}/ok")
    assert tls_server.count == 0


def test_redirect_https_to_http_downgrade_refused(
    tls_server: _Server, server: _Server, cert: tuple[Path, Path]
) -> None:
    resolver = StubResolver({"voices.test": ["127.0.0.1"]})
    f = fetcher(resolver, address_policy=only("127.0.0.1"), ssl_context=_client_ctx(cert))
    with pytest.raises(PermissionDeniedError):
        f.fetch(f"https://voices.test:{tls_server.port}/redirect?to=http://voices.test:{server.port}/ok")
    assert server.count == 0
