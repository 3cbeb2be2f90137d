"""The origin policy: normalized comparison, wildcard subdomains, missing and opaque origins."""

from __future__ import annotations

import pytest

from wsgi_ws.protocol.origins import OriginPolicy, check_pattern, normalize_origin

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("origin", "normal"),
    [
        ("https://a.com", "https://a.com"),
        ("HTTPS://A.COM:443", "https://a.com"),
        ("http://a.com:80", "http://a.com"),
        ("http://a.com:8080", "http://a.com:8080"),
        ("https://a.com:80", "https://a.com:80"),
        ("https://a.com/", "https://a.com"),
        ("null", "null"),
        ("http://[::1]:5000", "http://[::1]:5000"),
        ("a.com", None),
        ("https://a.com/path", None),
        ("https://a.com:99999", None),
        ("", None),
    ],
)
def test_normalize(origin: str, normal: str | None) -> None:
    assert normalize_origin(origin) == normal


POLICY = OriginPolicy(("https://a.com", "https://*.example.com", "http://localhost:5000"))


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://a.com", True),
        ("HTTPS://A.COM:443", True),
        ("http://a.com", False),
        ("https://a.com:8443", False),
        ("https://sub.example.com", True),
        ("https://deep.sub.example.com", True),
        ("https://example.com", False),
        ("https://example.com.evil.net", False),
        ("https://evilexample.com", False),
        ("http://sub.example.com", False),
        ("http://localhost:5000", True),
        ("http://localhost", False),
        ("null", False),
        ("garbage", False),
        (None, True),
    ],
)
def test_policy(origin: str | None, allowed: bool) -> None:
    assert POLICY.allows(origin) is allowed


def test_star_allows_everything_but_require_origin_refuses_missing() -> None:
    assert OriginPolicy(("*",)).allows("https://anything.net")
    assert not OriginPolicy(("*",), require_origin=True).allows(None)


def test_null_only_when_listed() -> None:
    assert OriginPolicy(("null",)).allows("null")


@pytest.mark.parametrize("pattern", ["*", "null", "https://a.com", "https://*.a.com", "http://*.a.com:8080"])
def test_valid_patterns(pattern: str) -> None:
    assert check_pattern(pattern) is None


@pytest.mark.parametrize("pattern", ["a.com", "https://a*.com", "*.a.com", "https://*", "https://a.com/x"])
def test_invalid_patterns(pattern: str) -> None:
    assert check_pattern(pattern) is not None
