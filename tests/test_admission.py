"""Per-IP admission with a fake clock: the token bucket, the cap and its release, scopes, and a Redis outage."""

from __future__ import annotations

from typing import Any

import pytest

from wsgi_ws.integrations.admission import Admission
from wsgi_ws.integrations.wsgi import HTTPErrorApp
from wsgi_ws.options import WebSocketOptions

pytestmark = pytest.mark.unit


def request(ip: str = "192.0.2.1") -> dict[str, Any]:
    return {"REMOTE_ADDR": ip, "PATH_INFO": "/ws"}


def test_the_rate_is_a_bucket_of_one_seconds_worth_then_429_with_retry_after() -> None:
    now = [0.0]
    admission = Admission(clock=lambda: now[0])
    options = WebSocketOptions(max_connection_rate_per_ip=2)
    assert [admission.admit(request(), options) for _ in range(2)] == [None, None]
    refused = admission.admit(request(), options)
    assert isinstance(refused, HTTPErrorApp) and refused.status == 429 and ("Retry-After", "1") in refused.headers
    assert admission.admit(request("192.0.2.2"), options) is None  # another IP has its own bucket
    now[0] += 0.5
    assert admission.admit(request(), options) is None
    slow = WebSocketOptions(max_connection_rate_per_ip=0.25)  # under one a second: a burst of one, then 4 s apart
    assert admission.admit(request("192.0.2.3"), slow) is None
    later = admission.admit(request("192.0.2.3"), slow)
    assert isinstance(later, HTTPErrorApp) and ("Retry-After", "4") in later.headers


def test_the_cap_counts_until_released_per_scope() -> None:
    admission = Admission()
    options = WebSocketOptions(max_connections_per_ip=1)
    release = admission.admit(request(), options)
    assert callable(release) and not isinstance(release, HTTPErrorApp) and admission.open_from("192.0.2.1") == 1
    refused = admission.admit(request(), options)
    assert isinstance(refused, HTTPErrorApp) and ("Retry-After", "5") in refused.headers
    other_route = admission.admit(request(), options, "/other")
    assert callable(other_route)
    release()
    assert admission.open_from("192.0.2.1") == 0
    assert callable(admission.admit(request(), options))


class BrokenRedis:
    def acquire(self, scope: str, ip: str, cap: int) -> int | None:
        raise ConnectionError("redis down")

    def release(self, scope: str, ip: str) -> None:
        raise ConnectionError("redis down")


def test_a_redis_outage_falls_back_to_this_workers_count(caplog: pytest.LogCaptureFixture) -> None:
    admission = Admission(lambda: BrokenRedis())  # type: ignore[arg-type, return-value]
    options = WebSocketOptions(max_connections_per_ip=1)
    assert callable(admission.admit(request(), options))
    assert isinstance(admission.admit(request(), options), HTTPErrorApp)
    assert sum("counting this worker's connections only" in r.message for r in caplog.records) == 1
