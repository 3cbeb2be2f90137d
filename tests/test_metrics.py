"""Process counters by route: live connections counted as they go, folded into their route's totals when they end."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import pytest

from wsgi_ws import metrics
from wsgi_ws.metrics import ROUTE_KEY, Buckets

pytestmark = pytest.mark.unit

_paths = itertools.count()


def fresh_route() -> str:
    """A route no other test counted in."""
    return f"/test-metrics-{next(_paths)}"


class Counted:
    """What metrics reads of a connection (WebSocket has all of it)."""

    def __init__(self, path: str, route: str | None = None) -> None:
        self.environ: Mapping[str, object] = {"PATH_INFO": path, **({ROUTE_KEY: route} if route else {})}
        self.message_sizes: tuple[Buckets, Buckets] | None = None
        self.messages_received = self.messages_sent = self.bytes_received = self.bytes_sent = 0
        self.close_code: int | None = None
        self.duration = 0.0


def test_live_connections_count_until_closed_then_stay_in_the_totals() -> None:
    before = metrics.snapshot()
    connection = Counted(fresh_route())
    metrics.opened(connection)
    connection.messages_received, connection.bytes_received = 2, 10
    live = metrics.snapshot()
    assert live["open"] == before["open"] + 1 and live["accepted"] == before["accepted"] + 1
    assert live["messages_in"] == before["messages_in"] + 2 and live["bytes_in"] == before["bytes_in"] + 10
    connection.messages_sent, connection.close_code = 1, 1000
    metrics.closed(connection)
    metrics.closed(connection)  # a second close counts nothing twice
    after = metrics.snapshot()
    assert after["open"] == before["open"] and after["closed"] == before["closed"] + 1
    assert (after["messages_in"], after["messages_out"]) == (before["messages_in"] + 2, before["messages_out"] + 1)


def test_message_sizes_are_counted_only_once_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_count_sizes", False)
    before = Counted(fresh_route())
    metrics.opened(before)
    metrics.count_message_sizes()
    after = Counted(fresh_route())
    metrics.opened(after)
    assert before.message_sizes is None and after.message_sizes is not None


def test_counts_are_kept_by_route_with_close_codes_durations_and_message_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_count_sizes", True)
    route = fresh_route()
    first, second = Counted(route), Counted(route)
    for connection in (first, second):
        metrics.opened(connection)
    assert first.message_sizes is not None, "an accepted connection counts its messages' sizes in its route's buckets"
    first.message_sizes[0].add(10)
    first.message_sizes[1].add(5000)
    first.close_code, first.duration = 1001, 0.5
    second.duration = 30.0  # broke: no close code
    metrics.closed(first)
    metrics.closed(second)
    counts = metrics.routes()[route]
    assert (counts.accepted, counts.closed) == (2, 2)
    assert counts.closed_by_code == {1001: 1, 1006: 1}
    assert counts.durations.counts[1] == 1 and counts.durations.counts[3] == 1, "0.5 s is at most 1 s; 30 s at most 60 s"
    assert counts.sizes_in.counts[0] == 1 and counts.sizes_in.total == 10
    assert counts.sizes_out.counts[4] == 1, "5000 bytes fall in the bucket up to 16 KiB"


def test_the_flask_rule_is_the_route_and_the_path_is_the_fallback() -> None:
    rule = fresh_route() + "/<name>"
    metrics.opened(Counted("/rooms/1", route=rule))
    metrics.opened(Counted("/rooms/2", route=rule))
    counts = metrics.routes()
    assert counts[rule].accepted == 2 and "/rooms/1" not in counts


def test_refusals_are_counted_by_route_and_reason() -> None:
    route = fresh_route()
    before = metrics.snapshot()
    metrics.refused({"PATH_INFO": route}, "origin")
    metrics.refused({"PATH_INFO": route}, "ip_rate")
    metrics.refused({"PATH_INFO": route}, "origin")
    assert metrics.routes()[route].refused_by_reason == {"origin": 2, "ip_rate": 1}
    after = metrics.snapshot()
    assert after["refused"] == before["refused"] + 3 and after["limited"] == before["limited"] + 1, "limited: by a per-IP limit"


def test_routes_past_the_limit_are_counted_together_as_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "MAX_ROUTES", len(metrics.routes()) + 1)
    kept, spilled = fresh_route(), fresh_route()
    metrics.refused({"PATH_INFO": kept}, "origin")
    other_before = metrics.routes().get("other")
    metrics.refused({"PATH_INFO": spilled}, "origin")
    counts = metrics.routes()
    assert kept in counts and spilled not in counts
    assert (
        counts["other"].refused_by_reason.get("origin", 0) == (other_before.refused_by_reason.get("origin", 0) if other_before else 0) + 1
    )


def test_buckets_count_each_value_under_the_first_bound_it_does_not_exceed() -> None:
    buckets = Buckets((1.0, 10.0))
    for value in (0.0, 1.0, 1.5, 10.0, 11.0):
        buckets.add(value)
    buckets.add(2.0, times=3)
    assert buckets.counts == [2, 5, 1] and buckets.total == 29.5
    copy = buckets.copy()
    buckets.add(0.5)
    assert copy.counts == [2, 5, 1], "a copy does not move with the original"


def test_a_source_that_counts_for_itself_joins_the_snapshot() -> None:
    counts = {"hub_delivered": 0}
    metrics.add_source(lambda: counts)
    counts["hub_delivered"] = 7
    assert metrics.snapshot()["hub_delivered"] == 7, "read at snapshot time, not when added"


def test_size_buckets_put_every_size_where_a_bisect_would() -> None:
    bounds = [int(bound) for bound in metrics.SIZE_BOUNDS]
    sizes = {0, 1, 2**40, *(b + d for b in bounds for d in (-1, 0, 1))}
    for size in sorted(sizes):
        by_table, by_bisect = metrics.SizeBuckets(), Buckets(metrics.SIZE_BOUNDS)
        by_table.add(size)
        by_bisect.add(size)
        assert by_table.counts == by_bisect.counts, size
    copied = metrics.SizeBuckets()
    copied.add(100, times=2)
    assert copied.copy().counts == copied.counts and copied.copy().total == 200
