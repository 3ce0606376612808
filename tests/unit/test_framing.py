"""The frame parser in process: each bad frame is reported once and the next good frame is read,
memory stays bounded, and how the bytes are split never changes what comes out (fuzzed with
seeded mutations; the same cases run end to end in tests/lsp/test_wire_fuzz.py)."""

from __future__ import annotations

import random

import pytest
from lsp_wire import body_frame, frame
from wire_mutations import RESYNC, cases

from codehone.lsp.framing import (
    MAX_HEADER_LINE_BYTES,
    MAX_MESSAGE_BYTES,
    Event,
    FrameParser,
    Message,
    Unreadable,
)

GOOD = {"jsonrpc": "2.0", "id": 7, "method": "shutdown"}


def feed_all(data: bytes, parser: FrameParser | None = None) -> list[Event]:
    return (parser or FrameParser()).feed(data)


def feed_split(data: bytes, rng: random.Random) -> list[Event]:
    parser, events, at = FrameParser(), [], 0
    while at < len(data):
        step = rng.randint(1, 4096)
        events += parser.feed(data[at : at + step])
        at += step
    return events


def reasons(events: list[Event]) -> list[str]:
    return [e.reason for e in events if isinstance(e, Unreadable)]


@pytest.mark.parametrize(
    "bad, problem",
    [
        (b"Content-Length: 1000000000000\r\n\r\n{}", "over the 64 MiB limit"),
        (b"Content-Length: %d\r\n\r\n{}" % (MAX_MESSAGE_BYTES + 1), "over the 64 MiB limit"),
        (b"Content-Length: 99999999999999999999999999\r\n\r\n{}", "26 digits"),
        (b"Content-Type: application/vscode-jsonrpc\r\n\r\n{}", "without a Content-Length"),
        (b"\r\n\r\n{}", "bytes outside any message"),
        (b"Content-Length: -5\r\n\r\n{}", "not a byte count: '-5'"),
        (b"Content-Length: abc\r\n\r\n{}", "not a byte count: 'abc'"),
        (b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", "conflicting"),
        (b"Content-Length 2\r\n\r\n{}", "bytes outside any message"),
        (b"X-Junk: " + b"a" * MAX_HEADER_LINE_BYTES + b"\r\n", "header line over 64 KiB"),
        (b"a" * (3 * MAX_HEADER_LINE_BYTES), "header line over 64 KiB"),
        (b"\x00\xff garbage \xe2\x82", "bytes outside any message"),
    ],
)
def test_a_bad_frame_is_reported_once_and_the_next_one_is_read(bad: bytes, problem: str):
    events = feed_all(bad + frame(GOOD))
    assert len(reasons(events)) == 1 and problem in reasons(events)[0], events
    assert events[-1] == Message(GOOD)


@pytest.mark.parametrize(
    "good",
    [
        b"content-length: 2\r\n\r\n{}",  # header names are case-insensitive
        b"CONTENT-LENGTH:2\r\n\r\n{}",
        b"Content-Length: 2\n\n{}",  # LF-only line ends
        b"Content-Length : 2\r\n\r\n{}",
        b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nContent-Length: 2\r\n\r\n{}",
        b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",  # a repeated, agreeing length
        b"\r\n\r\nContent-Length: 2\r\n\r\n{}",  # blank lines between frames are harmless
    ],
)
def test_header_variants_are_read(good: bytes):
    assert feed_all(good + frame(GOOD)) == [Message({}), Message(GOOD)]


def test_a_length_past_the_body_does_not_lose_the_next_message():
    # The body runs 50 bytes into the next frame: it is not JSON, and the frame inside it is
    # read again from its header.
    events = feed_all(b"Content-Length: 50\r\n\r\n{}" + frame(GOOD) + frame({"jsonrpc": "2.0"}))
    assert len(reasons(events)) == 1 and "reading again" in reasons(events)[0]
    assert events[1:] == [Message(GOOD), Message({"jsonrpc": "2.0"})]


def test_a_length_short_of_the_body_is_one_problem():
    events = feed_all(b"Content-Length: 5\r\n\r\n" + b'{"jsonrpc": "2.0"}' + frame(GOOD))
    assert len(reasons(events)) == 1 and events[-1] == Message(GOOD)


def test_bodies_that_are_not_json():
    assert reasons(feed_all(body_frame(b"[" * 100_000 + b"]" * 100_000))) == [
        "a message that is not JSON (nested too deeply)"
    ]
    assert reasons(feed_all(body_frame(b'{"a": "\xff"}'))) == [
        "a message that is not JSON (not UTF-8)"
    ]
    assert reasons(feed_all(body_frame(b""))) == ["a message that is not JSON (Expecting value)"]
    # each well-framed bad message is its own problem
    assert len(reasons(feed_all(body_frame(b"{") * 3 + frame(GOOD)))) == 3


def test_memory_stays_bounded():
    parser = FrameParser()
    assert parser.feed(b"Content-Length: 1000000000000\r\n\r\n") != []
    for _ in range(200):  # 12.8 MB of junk without a line end, a huge "body"
        assert parser.feed(b"x" * 65536) == []
        assert parser.buffered <= MAX_HEADER_LINE_BYTES + 65536
    assert parser.feed(frame(GOOD)) == [Message(GOOD)]
    assert parser.buffered == 0


def test_a_frame_split_anywhere_reads_the_same():
    data = frame(GOOD) + b"content-length: 2\n\n{}" + frame({"jsonrpc": "2.0", "id": "é"})
    expected = feed_all(data)
    for cut in range(len(data) + 1):
        parser = FrameParser()
        assert parser.feed(data[:cut]) + parser.feed(data[cut:]) == expected


@pytest.mark.parametrize("seed", range(8))
def test_fuzz_every_mutation_is_survived(seed: int):
    """After any mutated frame, RESYNC and a good request, the good request is read; and the
    same bytes split at random give the same events."""
    rng = random.Random(seed)
    for index, (kind, data) in enumerate(cases(seed, 250)):
        probe = {"jsonrpc": "2.0", "id": f"probe-{seed}-{index}", "method": "codehone/status"}
        stream = data + RESYNC + frame(probe)
        events = feed_all(stream)
        assert events and events[-1] == Message(probe), (seed, index, kind, events[-3:])
        assert len(reasons(events)) <= 2 * (kind.count("+") + 1) + 1, (seed, index, kind, events)
        assert feed_split(stream, rng) == events, (seed, index, kind)
