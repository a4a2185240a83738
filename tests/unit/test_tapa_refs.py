"""TAPA request parsing and Watch filters (pure)."""
from __future__ import annotations

import pytest

from meridio.api.pb.ambassador.v1 import tap_pb2
from meridio.tapa import refs
from meridio.tapa.refs import Filter, StreamRef


def _stream(name: str = "stream-a-i", conduit: str | None = "conduit-a-1", trench: str | None = "trench-a"
            ) -> tap_pb2.Stream:
    msg = tap_pb2.Stream(name=name)
    if conduit is not None:
        msg.conduit.name = conduit
        if trench is not None:
            msg.conduit.trench.name = trench
    return msg


def test_a_complete_stream_parses_into_a_reference_with_meridios_full_name() -> None:
    ref = refs.ref_from_pb(_stream())
    assert ref == StreamRef("trench-a", "conduit-a-1", "stream-a-i")
    assert ref.full_name == "stream-a-i.conduit-a-1.trench-a"


@pytest.mark.parametrize("msg, error", [
    (None, "stream cannot be nil"),
    (_stream(conduit=None), "conduit cannot be nil"),
    (_stream(trench=None), "trench cannot be nil"),
    (_stream(name=""), "stream name cannot be empty"),
    (_stream(conduit=""), "conduit name cannot be empty"),
    (_stream(trench=""), "trench name cannot be empty"),
], ids=["nil-stream", "nil-conduit", "nil-trench", "empty-stream", "empty-conduit", "empty-trench"])
def test_an_incomplete_stream_is_refused_with_meridios_message(msg: tap_pb2.Stream | None, error: str) -> None:
    with pytest.raises(refs.InvalidRequest, match=f"^{error}$"):
        refs.ref_from_pb(msg)


@pytest.mark.parametrize("trench", ["../etc", "Trench-A", "a/b", "-a", "a" * 254, "tr ench"])
def test_a_name_that_is_not_a_resource_name_is_refused_naming_the_field(trench: str) -> None:
    with pytest.raises(refs.InvalidRequest, match="^trench name .* is invalid"):
        refs.ref_from_pb(_stream(trench=trench))


def test_a_reference_round_trips_through_the_ambassador_message() -> None:
    ref = StreamRef("trench-a", "conduit-a-1", "stream-a-i")
    assert refs.ref_from_pb(refs.ref_to_pb(ref)) == ref


REF = StreamRef("trench-a", "conduit-a-1", "stream-a-i")


@pytest.mark.parametrize("msg, matches", [
    (None, True),
    (tap_pb2.Stream(), True),
    (_stream(name="", conduit=None), True),
    (_stream(name="", conduit="", trench=None), True),
    (_stream(name="", conduit="", trench=""), True),
    (_stream(name="", conduit="", trench="trench-a"), True),
    (_stream(name="", conduit="", trench="trench-b"), False),
    (_stream(name="", conduit="conduit-a-1", trench=None), True),
    (_stream(name="", conduit="conduit-a-2", trench=None), False),
    (_stream(name="stream-a-i", conduit=None), True),
    (_stream(name="stream-a-ii", conduit=None), False),
    (_stream(), True),
    (_stream(trench="trench-b"), False),
], ids=["nil", "empty", "no-conduit", "no-trench", "empty-trench", "same-trench", "other-trench",
        "same-conduit", "other-conduit", "same-stream", "other-stream", "exact", "exact-other-trench"])
def test_watch_filters_treat_empty_names_and_missing_parents_as_wildcards(msg: tap_pb2.Stream | None,
                                                                          matches: bool) -> None:
    assert refs.filter_from_pb(msg).matches(REF) is matches


def test_a_default_filter_matches_everything() -> None:
    assert Filter().matches(REF)
