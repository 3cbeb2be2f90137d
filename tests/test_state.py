"""The connection lifecycle: every row of the transition table, and every move the table leaves out."""

from __future__ import annotations

import itertools

import pytest
from websockets.frames import CloseCode

from wsgi_ws.protocol.state import TRANSITIONS, ConnectionState, Event, InvalidTransition, Lifecycle

pytestmark = pytest.mark.unit

S, E = ConnectionState, Event


def in_state(state: ConnectionState) -> Lifecycle:
    lifecycle = Lifecycle()
    path = {
        S.CONNECTING: [],
        S.OPEN: [E.ACCEPT],
        S.CLOSING: [E.ACCEPT, E.CLOSE_STARTED],
        S.CLOSED: [E.ACCEPT, E.CLOSE_DONE],
    }[state]
    for event in path:
        lifecycle.handle(event)
    assert lifecycle.state is state
    return lifecycle


@pytest.mark.parametrize(("state", "event"), sorted(TRANSITIONS, key=str), ids=lambda v: getattr(v, "name", str(v)))
def test_every_row_of_the_table_moves_as_it_says(state: ConnectionState, event: Event) -> None:
    lifecycle = in_state(state)
    assert lifecycle.handle(event) is TRANSITIONS[state, event]
    assert lifecycle.state is TRANSITIONS[state, event]


ILLEGAL = [pair for pair in itertools.product(ConnectionState, Event) if pair not in TRANSITIONS]


@pytest.mark.parametrize(("state", "event"), ILLEGAL, ids=[f"{s.name}-{e.name}" for s, e in ILLEGAL])
def test_a_move_outside_the_table_raises_and_changes_nothing(state: ConnectionState, event: Event) -> None:
    lifecycle = in_state(state)
    with pytest.raises(InvalidTransition) as caught:
        lifecycle.handle(event)
    assert lifecycle.state is state
    assert (caught.value.state, caught.value.event) == (state, event)
    assert state.value in str(caught.value)


def test_the_illegal_moves_are_the_ones_a_user_can_make_by_mistake() -> None:
    assert set(ILLEGAL) == {
        (S.CONNECTING, E.CLOSE_STARTED),
        (S.CONNECTING, E.ABORT),
        (S.CONNECTING, E.CLOSE_DONE),
        *((state, E.ACCEPT) for state in (S.OPEN, S.CLOSING, S.CLOSED)),
        *((state, E.REQUEST_ENDED) for state in (S.OPEN, S.CLOSING, S.CLOSED)),
    }


def test_an_abort_is_a_kind_of_closed_that_remembers_its_code() -> None:
    lifecycle = in_state(S.OPEN)
    assert lifecycle.abort(1011, "keep-alive timeout")
    assert lifecycle.state is S.CLOSED and lifecycle.aborted == (1011, "keep-alive timeout")
    assert not lifecycle.abort(1013, "later"), "the first abort wins"
    assert lifecycle.aborted == (1011, "keep-alive timeout")


def test_an_abort_keeps_a_plain_int_code() -> None:
    """websockets' CloseCode is an IntEnum, whose str() is its name before Python 3.11: ws.close_code must print 1011."""
    lifecycle = in_state(S.OPEN)
    assert lifecycle.abort(CloseCode.INTERNAL_ERROR, "keep-alive timeout")
    assert lifecycle.aborted is not None and type(lifecycle.aborted[0]) is int and str(lifecycle.aborted[0]) == "1011"


def test_a_connection_never_accepted_cannot_be_aborted() -> None:
    lifecycle = Lifecycle()
    assert not lifecycle.abort(1011, "x")
    assert lifecycle.state is S.CONNECTING and lifecycle.aborted is None
