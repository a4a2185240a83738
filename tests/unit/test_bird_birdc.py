"""The sans-IO BIRD reply parser and decoders, fed with replies captured from a real BIRD 2.0.12
(``tests/unit/golden/bird/replies``: a frontend with BGP v4/v6 + BFD, a static+BFD gateway and an
unreachable gateway, peering with a gateway BIRD in a network namespace)."""
from __future__ import annotations

import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meridio.bird import birdc

REPLIES = pathlib.Path(__file__).parent / "golden" / "bird" / "replies"


def load(name: str) -> bytes:
    return (REPLIES / name).read_bytes()


def events(data: bytes) -> list[birdc.Reply | birdc.Notice]:
    parser = birdc.ReplyParser()
    out = parser.feed(data)
    assert parser.idle
    return out


def replies(data: bytes) -> list[birdc.Reply]:
    return [e for e in events(data) if isinstance(e, birdc.Reply)]


def test_the_greeting_is_a_complete_reply_with_code_1() -> None:
    hello, _ = replies(load("show_status.txt"))
    assert hello.code == 1 and hello.text == "BIRD 2.0.12 ready."


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_reply_parses_the_same_whatever_the_chunking(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(p.name for p in REPLIES.iterdir())))
    raw = load(name)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    parser = birdc.ReplyParser()
    chunked: list[birdc.Reply | birdc.Notice] = []
    for start, end in zip([0, *cuts], [*cuts, len(raw)]):
        chunked += parser.feed(raw[start:end])
    assert chunked == events(raw)


def test_continuation_lines_take_the_code_of_the_line_before() -> None:
    _, reply = replies(load("show_protocols.txt"))
    rows = [line for line in reply.lines if line.code == 1002]
    assert len(rows) == 14
    assert rows[1].text.startswith("VIP4 ")


def test_show_protocols_decodes_state_since_and_multi_word_info() -> None:
    _, reply = replies(load("show_protocols.txt"))
    by_name = {p.name: p for p in birdc.protocols(reply)}
    assert by_name["NBR-gw-v4"].state == "up" and by_name["NBR-gw-v4"].info == "Established"
    assert by_name["NBR-gw-v4"].since == "09:53:23.686"
    absent = by_name["NBR-gw-absent"]
    assert (absent.state, absent.info) == ("start", "Active        Socket: No route to host")
    assert by_name["NBR-gw-static"].proto == "Static" and by_name["NBR-gw-static"].info == ""


def test_show_protocols_all_attaches_details_and_route_counts_to_each_protocol() -> None:
    _, reply = replies(load("show_protocols_all_nbr.txt"))
    by_name = {p.name: p for p in birdc.protocols(reply)}
    assert set(by_name) == {"NBR-gw-v4", "NBR-gw-v6", "NBR-gw-static", "NBR-gw-absent", "NBR-BFD"}
    assert by_name["NBR-gw-v4"].bgp_state == "Established"
    assert by_name["NBR-gw-v4"].routes == birdc.RouteCounts(imported=1, exported=1, preferred=0)
    assert by_name["NBR-gw-absent"].bgp_state == "Active"
    assert by_name["NBR-BFD"].details == ()


def test_no_protocols_match_decodes_as_an_empty_list() -> None:
    _, reply = replies(load("show_protocols_no_match.txt"))
    assert reply.code == 8003 and reply.is_error
    assert birdc.protocols(reply) == []


def test_bfd_sessions_decode_with_their_protocol_state_and_timers() -> None:
    _, reply = replies(load("show_bfd_sessions.txt"))
    sessions = birdc.bfd_sessions(reply)
    assert sessions == [
        birdc.BfdSession("NBR-BFD", "192.0.2.1", "ext0", "Up", "09:53:23.705", 0.1, 0.3),
        birdc.BfdSession("NBR-BFD", "2001:db8:e::1", "ext0", "Up", "09:53:24.414", 0.05, 0.15),
    ]


def test_configure_success_and_refusal_carry_birds_own_message() -> None:
    _, ok, refused = replies(load("configure_ok_then_error.txt"))
    assert birdc.configure_result(ok) == birdc.ConfigureResult(True, "Reconfigured")
    result = birdc.configure_result(refused)
    assert not result.ok
    assert result.message == "/tmp/fex/bad.conf:1:10 syntax error, unexpected CF_SYM_UNDEFINED"


@pytest.mark.parametrize("line, ok", [
    (b"0004 Reconfiguration in progress\n", True),
    (b"0005 Reconfiguration already in progress, queueing new config\n", True),
    (b"0006 Reconfiguration ignored, shutting down\n", False),
    (b"0020 Configuration OK\n", True),
], ids=["in-progress", "queued", "shutting-down", "check-ok"])
def test_configure_outcome_follows_the_final_code(line: bytes, ok: bool) -> None:
    (reply,) = replies(b"0002-Reading configuration from /x.conf\n" + line)
    assert birdc.configure_result(reply).ok is ok


def test_log_lines_after_echo_are_notices() -> None:
    evs = events(load("echo_all_session_down.txt"))
    notices = [e.text for e in evs if isinstance(e, birdc.Notice)]
    assert "NBR-gw-v6: BFD session down" in notices
    assert [e.code for e in evs if isinstance(e, birdc.Reply)] == [1, 0]


def test_a_notice_between_the_lines_of_a_reply_does_not_break_the_reply() -> None:
    evs = events(b"1020-NBR-BFD:\n+NBR-gw: State changed to stop\n IP address  Interface  State\n0000 \n")
    assert evs[0] == birdc.Notice("NBR-gw: State changed to stop")
    assert isinstance(evs[1], birdc.Reply) and [line.code for line in evs[1].lines] == [1020, 1020, 0]


def test_a_runtime_error_in_a_table_query_raises_with_birds_message() -> None:
    (reply,) = replies(b"8001 Protocol is down\n")
    with pytest.raises(birdc.CommandError, match="Protocol is down"):
        birdc.bfd_sessions(reply)


@pytest.mark.parametrize("data", [b"hello\n", b"12345 x\n", b" orphan continuation\n"],
                         ids=["no-code", "five-digits", "orphan-continuation"])
def test_bytes_that_are_not_birds_protocol_raise_a_protocol_error(data: bytes) -> None:
    with pytest.raises(birdc.ProtocolError):
        birdc.ReplyParser().feed(data)


def test_a_partial_line_waits_for_its_end() -> None:
    parser = birdc.ReplyParser()
    assert parser.feed(b"0003 Reconf") == [] and not parser.idle
    assert parser.feed(b"igured\n") == [birdc.Reply((birdc.Line(3, "Reconfigured"),))]


def test_strings_bird_cannot_hold_are_refused_before_sending() -> None:
    assert birdc.quote("/run/fe/bird.conf") == '"/run/fe/bird.conf"'
    with pytest.raises(birdc.ProtocolError):
        birdc.quote('a"b')
    with pytest.raises(birdc.ProtocolError):
        birdc.encode_command("show status\nshutdown")
