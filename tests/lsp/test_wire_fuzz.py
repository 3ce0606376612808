"""The transport fuzzed end to end: a few hundred seeded mutated frames (tests/wire_mutations.py)
into one real server over stdio; after each, a well-formed request must be answered. The same
cases run in process, in thousands, in tests/unit/test_framing.py."""

from __future__ import annotations

from pathlib import Path

from lsp_wire import INITIALIZED, RawSession, frame, initialize, parse_frames
from wire_mutations import RESYNC, cases

SEED = 20240611
CASES = 300
DOCUMENT = {
    "jsonrpc": "2.0",
    "method": "textDocument/didOpen",
    "params": {
        "textDocument": {
            "uri": "file:///fuzz.py",
            "languageId": "python",
            "version": 1,
            "text": "import os\n\ndef main():\n    path = os.path.join(\n",
        }
    },
}


def test_every_mutated_frame_is_survived(tiny_model_dir: Path, tmp_path: Path):
    session = RawSession(tiny_model_dir, extra=["--log-file", str(tmp_path / "serve.log")])
    try:
        session.send(frame(initialize(1)))
        session.by_id(1)
        session.send(frame(INITIALIZED) + frame(DOCUMENT))
        for index, (kind, data) in enumerate(cases(SEED, CASES)):
            probe = f"probe-{index}"
            session.send(
                data + RESYNC + frame({"jsonrpc": "2.0", "id": probe, "method": "codehone/status"})
            )
            try:
                answer = session.by_id(probe)
            except AssertionError as exc:
                raise AssertionError(f"seed {SEED} case {index} ({kind}): {exc}") from None
            assert "result" in answer, (index, kind, answer)
        session.shutdown_and_exit()
        assert session.process.wait(timeout=30) == 0
        messages = parse_frames(session.stdout)  # only protocol on stdout, through all of it
        assert all("Traceback" not in str(m.get("error", "")) for m in messages)
    finally:
        session.close()
