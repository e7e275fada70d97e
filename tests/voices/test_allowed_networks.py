"""VOICE_URL_ALLOWED_NETWORKS: an operator's own ranges join the public-only default policy."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from api.settings import Settings
from api.voices.safe_fetch import allowing_networks, is_public_address


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def test_empty_is_the_default_policy() -> None:
    assert allowing_networks([]) is is_public_address


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("10.1.2.3", True),
        ("10.255.0.1", True),
        ("11.0.0.1", True),  # public anyway
        ("127.0.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata stays refused
        ("::ffff:10.1.2.3", True),  # the mapped form is the same host
        ("::ffff:192.168.1.1", False),
        ("fd00::1", False),
    ],
)
def test_listed_ranges_are_allowed_and_nothing_else(address: str, allowed: bool) -> None:
    policy = allowing_networks(["10.0.0.0/8", " "])
    assert policy(ip(address)) is allowed


def test_ipv6_ranges() -> None:
    policy = allowing_networks(["fd00::/8"])
    assert policy(ip("fd12::5"))
    assert not policy(ip("fe80::1"))
    assert not policy(ip("10.0.0.1"))


def test_setting_refuses_a_malformed_range() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(voice_url_allowed_networks=["10.0.0.0/8", "not-a-net"])
    assert "CIDR" in str(caught.value)
    assert Settings(voice_url_allowed_networks=["10.0.0.0/8"]).voice_url_allowed_networks == ["10.0.0.0/8"]
