"""SSRF-safe download of ``url+`` reference voices.

Rules, all enforced here (the caller only passes the URL):

* only ``http``/``https``; no credentials in the URL; no ``https`` → ``http`` downgrade on redirect;
* optional host allow-list (exact host names, case-insensitive, checked on every hop);
* the host is resolved **once** (through an injectable resolver) and **every** address it resolves to
  must be allowed (default :func:`is_public_address`: globally routable unicast only). IPv4 literals in
  any legacy form (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``) are parsed here, never handed
  to a resolver;
* the connection goes to the validated IP (the URL is rewritten to the IP), with the original ``Host``
  header and TLS SNI + certificate verification against the host name, so no second DNS lookup can
  swap the address (DNS rebinding);
* redirects are followed by hand, each hop re-validated as above, at most ``max_redirects``;
* ``Content-Length`` is checked first, then the body is streamed with a byte cap (413 as soon as it is
  exceeded);
* a single deadline covers the whole fetch (DNS, connect, TLS, every hop, every read).

Errors: a refused destination (address or allow-list) is **403** (:class:`PermissionDeniedError`);
a malformed URL, DNS failure, unreachable host, TLS failure, HTTP error status or timeout is **400**;
an oversized body is **413**. Messages never contain resolved addresses or internal details.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx

from api.errors import InvalidRequestError, PayloadTooLargeError, PermissionDeniedError

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) -> [ip strings]``; the default wraps :func:`socket.getaddrinfo`.
Resolver = Callable[[str, int], Sequence[str]]
AddressPolicy = Callable[[IPAddress], bool]

_T = TypeVar("_T")

DEFAULT_MAX_REDIRECTS = 3
_PARAM = "voice"

# Networks refused even where ``ipaddress`` (whose tables differ between Python versions) says global.
_BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)
_BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/8",  # unspecified, loopback, IPv4-compatible (deprecated) and other reserved
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments, incl. Teredo 2001::/32
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 SIDs
        "64:ff9b:1::/48",  # local-use NAT64
        "fc00::/7",  # unique local (ULA), incl. fd00:ec2::254 (cloud metadata)
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_6TO4 = ipaddress.IPv6Network("2002::/16")
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT


def _public_v4(ip: ipaddress.IPv4Address) -> bool:
    if any(ip in net for net in _BLOCKED_V4):
        return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, translated, compatible, NAT64, 6to4), if any."""
    if ip in _MAPPED or ip in _TRANSLATED or ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _6TO4:
        return ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)
    if int(ip) >> 32 == 0 and int(ip) > 1:  # ::a.b.c.d (IPv4-compatible)
        return ipaddress.IPv4Address(int(ip))
    return None


def allowing_networks(networks: Iterable[str]) -> AddressPolicy:
    """The default policy, plus the given CIDR ranges (``VOICE_URL_ALLOWED_NETWORKS``: an operator's
    own private networks, e.g. an internal object store). An IPv4-mapped IPv6 address counts as its
    IPv4 address. Raises ``ValueError`` on a malformed range."""
    nets = [ipaddress.ip_network(n.strip(), strict=False) for n in networks if n.strip()]
    if not nets:
        return is_public_address

    def policy(ip: IPAddress) -> bool:
        v4 = embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
        candidates = [ip] if v4 is None else [ip, v4]
        return is_public_address(ip) or any(
            c in net for c in candidates for net in nets if c.version == net.version
        )

    return policy


def is_public_address(ip: IPAddress) -> bool:
    """True only for globally routable unicast addresses (the default address policy)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _public_v4(ip)
    if ip.scope_id:
        return False
    v4 = embedded_ipv4(ip)
    if v4 is not None and not _public_v4(v4):
        return False
    if ip in _MAPPED:  # ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket
        return True
    if any(ip in net for net in _BLOCKED_V6):
        return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_site_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


_NUMERIC_LABEL = re.compile(r"^(0[xX][0-9a-fA-F]*|[0-9]+)$")


def parse_ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """Parse ``host`` as an IPv4 address the way browsers and ``inet_aton`` do.

    Accepts 1–4 dot-separated parts in decimal, octal (leading ``0``) or hex (``0x``); the last part
    fills the remaining bytes (``127.1``, ``2130706433``, ``0x7f.1``, ``0177.0.0.1``). Returns ``None``
    when the host is not numeric; raises :class:`InvalidRequestError` when it looks numeric (its last
    label is a number) but is not a valid address, so it is never sent to a resolver.
    """
    labels = host.split(".")
    if labels and labels[-1] == "" and len(labels) > 1:
        labels = labels[:-1]
    if not labels or not _NUMERIC_LABEL.match(labels[-1]):
        return None
    bad = InvalidRequestError("The voice URL has an invalid IP address.", param=_PARAM, code="invalid_url")
    if len(labels) > 4 or not all(_NUMERIC_LABEL.match(p) for p in labels):
        raise bad
    nums: list[int] = []
    for part in labels:
        if part[:2].lower() == "0x":
            nums.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if any(c in "89" for c in part):
                raise bad
            nums.append(int(part, 8))
        else:
            nums.append(int(part))
    *head, last = nums
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        raise bad
    value = last
    for i, n in enumerate(head):
        value |= n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with :func:`socket.getaddrinfo` (TCP), returning address strings."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class FetchResult:
    """A downloaded body and what the server said about it."""

    content: bytes
    content_type: str | None
    url: str  # the final URL, after redirects


@dataclass(frozen=True)
class _Target:
    url: str  # original URL (with the host name), for redirects
    scheme: str
    host: str  # lower-cased host name or IP text, without brackets
    port: int
    request_url: str  # the URL actually requested: the validated IP in place of the host
    host_header: str
    sni: str | None  # host name for TLS (None when the URL host is an IP literal)


def _refused() -> PermissionDeniedError:
    return PermissionDeniedError(
        "The voice URL points to an address that is not allowed.", param=_PARAM, code="url_not_allowed"
    )


def _bad_url(message: str = "The voice URL is not a valid http(s) URL.") -> InvalidRequestError:
    return InvalidRequestError(message, param=_PARAM, code="invalid_url")


def _unreachable(message: str = "The voice URL could not be fetched.") -> InvalidRequestError:
    return InvalidRequestError(message, param=_PARAM, code="url_fetch_failed")


def _timeout() -> InvalidRequestError:
    return InvalidRequestError("Fetching the voice URL timed out.", param=_PARAM, code="url_timeout")


_FORBIDDEN_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


class SafeFetcher:
    """Downloads ``http(s)`` URLs under the rules in the module docstring.

    ``resolver`` and ``address_policy`` are seams: tests map names to ``127.0.0.1`` and, for the happy
    path only, allow loopback. ``ssl_context`` overrides certificate verification (tests trust a
    self-signed certificate); host-name checking stays on.
    """

    def __init__(
        self,
        *,
        max_bytes: int,
        timeout: float,
        allowed_hosts: Iterable[str] = (),
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        resolver: Resolver = system_resolver,
        address_policy: AddressPolicy = is_public_address,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.allowed_hosts = frozenset(h.strip().lower().rstrip(".") for h in allowed_hosts if h.strip())
        self.max_redirects = max_redirects
        self.resolver = resolver
        self.address_policy = address_policy
        self.ssl_context = ssl_context

    # -- public -------------------------------------------------------------------------------

    def fetch(self, url: str) -> FetchResult:
        """Blocking fetch; call from a worker thread (not from inside a running event loop)."""
        return asyncio.run(self.fetch_async(url))

    async def fetch_async(self, url: str) -> FetchResult:
        """Fetch ``url``; the whole operation is bounded by ``self.timeout``."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._fetch(url)
        except TimeoutError:
            raise _timeout() from None

    # -- internals ----------------------------------------------------------------------------

    async def _fetch(self, url: str) -> FetchResult:
        verify: ssl.SSLContext | bool = self.ssl_context if self.ssl_context is not None else True
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            verify=verify, trust_env=False, follow_redirects=False, timeout=self.timeout, limits=limits
        ) as client:
            current = url
            for hop in range(self.max_redirects + 1):
                target = await self._validate(current)
                result = await self._request(client, target)
                if isinstance(result, FetchResult):
                    return result
                if hop == self.max_redirects:
                    break
                nxt = urljoin(target.url, result)
                if target.scheme == "https" and urlsplit(nxt).scheme.lower() == "http":
                    raise _refused()
                current = nxt
        raise _unreachable("The voice URL redirected too many times.")

    async def _validate(self, url: str) -> _Target:
        """Parse, check scheme/host/allow-list, resolve once and check every address."""
        if _FORBIDDEN_URL_CHARS.search(url):
            raise _bad_url()
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise _bad_url() from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise _bad_url("Only http and https voice URLs are supported.")
        if "@" in parts.netloc or parts.username is not None or parts.password is not None:
            raise _bad_url("Voice URLs must not contain credentials.")
        raw_host = parts.hostname
        if not raw_host:
            raise _bad_url()
        host = raw_host.lower().rstrip(".")
        if port is None:
            port = 443 if scheme == "https" else 80
        if not 0 < port < 65536:
            raise _bad_url()
        if self.allowed_hosts and host not in self.allowed_hosts:
            raise _refused()

        literal: IPAddress | None
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
            if ":" in host or "%" in host:
                raise _bad_url() from None
        if literal is None:
            literal = parse_ipv4_literal(host)

        if literal is not None:
            addresses: list[IPAddress] = [literal]
            sni = None
        else:
            try:
                idna_host = host.encode("idna").decode("ascii")
            except UnicodeError:
                raise _bad_url() from None
            addresses = await self._resolve(idna_host, port)
            host = idna_host
            sni = idna_host
        if not addresses or not all(self.address_policy(a) for a in addresses):
            raise _refused()

        ip = addresses[0]
        ip_text = f"[{ip}]" if ip.version == 6 else str(ip)
        path = parts.path or "/"
        query = f"?{parts.query}" if parts.query else ""
        default_port = 443 if scheme == "https" else 80
        host_text = f"[{host}]" if ":" in host else host
        host_header = host_text if port == default_port else f"{host_text}:{port}"
        return _Target(
            url=url,
            scheme=scheme,
            host=host,
            port=port,
            request_url=f"{scheme}://{ip_text}:{port}{path}{query}",
            host_header=host_header,
            sni=sni,
        )

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            raw = await _in_daemon_thread(self.resolver, host, port)
        except OSError:
            raise _unreachable("The voice URL's host could not be resolved.") from None
        if not raw:
            raise _unreachable("The voice URL's host could not be resolved.")
        out: list[IPAddress] = []
        for text in raw:
            try:
                out.append(ipaddress.ip_address(text))
            except ValueError:  # scoped (fe80::1%eth0) or junk: refuse the whole host
                raise _refused() from None
        return out

    async def _request(self, client: httpx.AsyncClient, target: _Target) -> FetchResult | str:
        """One hop: the body, or the ``Location`` of a redirect."""
        extensions: dict[str, Any] = {}
        if target.sni is not None and target.scheme == "https":
            extensions["sni_hostname"] = target.sni
        headers = {"Host": target.host_header, "Accept-Encoding": "identity", "Accept": "audio/*, */*"}
        request = client.build_request("GET", target.request_url, headers=headers, extensions=extensions)
        try:
            response = await client.send(request, stream=True)
        except httpx.TimeoutException:
            raise _timeout() from None
        except httpx.ConnectError as exc:
            if isinstance(exc.__context__, ssl.SSLError) or "SSL" in str(exc) or "certificate" in str(exc):
                raise _unreachable("The voice URL's TLS certificate could not be verified.") from None
            raise _unreachable("The voice URL could not be reached.") from None
        except httpx.HTTPError:
            raise _unreachable() from None
        try:
            if response.is_redirect:
                location = response.headers.get("location")
                if not location:
                    raise _unreachable()
                return location
            if response.status_code != 200:
                raise _unreachable(f"The voice URL returned HTTP {response.status_code}.")
            declared = response.headers.get("content-length")
            if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
                raise _too_large(self.max_bytes)
            body = bytearray()
            try:
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise _too_large(self.max_bytes)
            except httpx.TimeoutException:
                raise _timeout() from None
            except httpx.HTTPError:
                raise _unreachable() from None
            return FetchResult(bytes(body), response.headers.get("content-type"), target.url)
        finally:
            await response.aclose()


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"The voice audio is larger than {limit} bytes.", param=_PARAM)


async def _in_daemon_thread(fn: Callable[..., _T], *args: Any) -> _T:
    """Run blocking ``fn`` in a daemon thread; cancelling the await abandons it (DNS can hang)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def _set(value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def _run() -> None:
        try:
            value, error = fn(*args), None
        except BaseException as exc:
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # loop already closed: the caller gave up
            loop.call_soon_threadsafe(_set, value, error)

    threading.Thread(target=_run, name="voice-url-resolve", daemon=True).start()
    return await future


def fetch_voice_url(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    allowed_hosts: Iterable[str] = (),
) -> FetchResult:
    """Convenience wrapper: a :class:`SafeFetcher` with the production policy."""
    return SafeFetcher(max_bytes=max_bytes, timeout=timeout, allowed_hosts=allowed_hosts).fetch(url)
