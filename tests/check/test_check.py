"""End to end: `codehone check` against the real server on a tiny random model.

The model's completions are arbitrary, so cases that must pass expect what the completion
pipeline returns in-process for the same text and cursor, and cases that must fail expect the
impossible. Bad input is checked in-process through `codehone.cli.main` (no server is started
for it); the runs that start a server go through the same `main` (the server is always the
real `codehone serve` subprocess), and one runs the whole command as a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from codehone.check.report import preview
from codehone.cli import main
from codehone.core.completion.completer import Completer
from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.options import CompletionOptions
from codehone.core.engine.session import Engine
from codehone.core.model_dir import load_model_dir
from codehone.core.providers import choose_provider
from codehone.core.tokenizer import TextTokenizer

CONFIG_PY = textwrap.dedent(
    """\
    import json
    import os


    def load(path):
        with open(path, <CURSOR>) as handle:
            return json.load(handle)


    def save(path, data):
        <HERE>
    """
)
STDLIB_FILES = ["textwrap.py", "shlex.py", "glob.py", "fnmatch.py", "bisect.py"]

# A fake server for failure modes: answers initialize, then (by its first argument)
# die:N   exits with code 3 at the N-th completion request, after a last word on stderr;
# hang:N  never answers the N-th completion request;
# error   answers every completion request with a JSON-RPC error.
FAKE_SERVER = r"""
import json, sys, time

mode = sys.argv[1]
count = 0
stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

def send(message):
    body = json.dumps(message).encode()
    stdout.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    stdout.flush()

while True:
    length = None
    while True:
        line = stdin.readline()
        if not line:
            sys.exit(0)
        if line == b"\r\n":
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    message = json.loads(stdin.read(length))
    method, ident = message.get("method"), message.get("id")
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": ident, "result": {"capabilities": {
            "completionProvider": {}, "inlineCompletionProvider": True, "textDocumentSync": 2}}})
    elif method in ("textDocument/completion", "textDocument/inlineCompletion"):
        count += 1
        if mode == "error":
            send({"jsonrpc": "2.0", "id": ident, "error": {"code": -32603, "message": "boom"}})
            continue
        kind, _, n = mode.partition(":")
        if count == int(n):
            if kind == "die":
                sys.stderr.write("fake server: crashed on purpose\n")
                sys.stderr.flush()
                sys.exit(3)
            continue  # hang: never answer
        send({"jsonrpc": "2.0", "id": ident, "result": {"items": [{"insertText": "fake"}]}})
    elif method == "shutdown":
        send({"jsonrpc": "2.0", "id": ident, "result": None})
    elif method == "exit":
        sys.exit(0)
    elif ident is not None:
        send({"jsonrpc": "2.0", "id": ident, "result": None})
"""


def toml_string(value: str) -> str:
    """A TOML basic string for any text (a random model's completions hold anything)."""
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif " " <= char <= "~":
            out.append(char)
        else:
            out.append(f"\\U{ord(char):08X}")
    return '"' + "".join(out) + '"'


def expected_text(model: Path, text: str, offset: int) -> str | None:
    """What the server's own pipeline gives, in-process, with the server's default options."""
    model_dir = load_model_dir(model)
    completer = Completer(
        Engine(model_dir, choose_provider("cpu")), TextTokenizer(model_dir.tokenizer_path)
    )
    return completer.complete(CursorContext(text, offset), CompletionOptions()).text


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A small project: a few source files, one with cursor markers, and .codehone.toml."""
    root = tmp_path_factory.mktemp("project")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    (root / "pkg").mkdir()
    for name in STDLIB_FILES:
        shutil.copy(stdlib / name, root / "pkg" / name)
    (root / "pkg" / "config.py").write_text(CONFIG_PY, encoding="utf-8")
    (root / ".codehone.toml").write_text(
        f"[model]\npath = {toml_string(str(tiny_model_dir))}\n", encoding="utf-8"
    )
    return root


@pytest.fixture(scope="module")
def answers(project: Path, tiny_model_dir: Path) -> dict[str, str | None]:
    """What the model completes at each cursor the cases use (markers removed)."""
    text = CONFIG_PY.replace("<CURSOR>", "").replace("<HERE>", "")
    at_marker = CONFIG_PY.index("<CURSOR>")
    at_here = CONFIG_PY.replace("<CURSOR>", "").index("<HERE>")
    after_import = text.index("import ") + len("import json")  # end of line 1
    return {
        "marker": expected_text(tiny_model_dir, text, at_marker),
        "here": expected_text(tiny_model_dir, text, at_here),
        "line_end": expected_text(tiny_model_dir, text, after_import),
    }


def write_cases(project: Path, body: str, name: str = "checks.toml") -> Path:
    path = project / ".codehone" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def mixed_cases(answers: dict[str, str | None]) -> str:
    """Four cases that must pass and two that must fail, whatever the model says."""
    marker, here, line_end = answers["marker"] or "", answers["here"] or "", answers["line_end"]
    return f"""
    [thresholds]
    min_pass_rate = 0.6
    max_load_seconds = 600
    max_p95_latency_ms = 60000

    [[case]]
    name = "marker equals"
    file = "pkg/config.py"
    marker = "<CURSOR>"
    equals = {toml_string(marker)}
    not_contains = ["<CURSOR>", "<HERE>"]

    [[case]]
    name = "second marker, menu"
    file = "pkg/config.py"
    marker = "<HERE>"
    kind = "completion"
    starts_with = {toml_string(here[:3])}

    [[case]]
    name = "line end"
    file = "pkg/config.py"
    line = 1
    {"not_empty = true" if line_end else 'equals = ""'}

    [[case]]
    name = "anything goes"
    file = "pkg/config.py"
    after = "def save(path, data):"
    matches = ".*"

    [[case]]
    name = "impossible"
    file = "pkg/config.py"
    marker = "<CURSOR>"
    equals = "<impossible>"

    [[case]]
    file = "pkg/config.py"
    line = 6
    column = 21
    kind = "completion"
    matches = "^<impossible>$"
    """


def junit_cases(path: Path) -> dict[str, ET.Element]:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None
    cases = {c.get("name", ""): c for c in suite.findall("testcase")}
    assert int(suite.get("tests", "-1")) == len(cases)
    assert int(suite.get("failures", "-1")) == sum(
        c.find("failure") is not None for c in cases.values()
    )
    return cases


def test_cases_file_end_to_end(project: Path, answers: dict[str, str | None], tmp_path: Path):
    """The whole command as CI runs it: a subprocess, PASS/FAIL lines, summary, JUnit, exit 0
    when the thresholds hold (4 of 6 pass, the threshold is 60%)."""
    write_cases(project, mixed_cases(answers))
    junit = tmp_path / "reports" / "codehone.xml"
    run = subprocess.run(
        [sys.executable, "-m", "codehone", "check", str(project), "--junit", str(junit)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    by_name = {
        name: next(line for line in lines if f"  {name} " in line)
        for name in ("marker equals", "second marker, menu", "line end", "anything goes")
    }
    for line in by_name.values():
        assert line.startswith("PASS"), line
        assert " ms" in line
    assert preview(answers["marker"]) in by_name["marker equals"]
    impossible = next(line for line in lines if "  impossible " in line)
    assert impossible.startswith("FAIL") and "not equal to '<impossible>'" in impossible
    default_named = next(line for line in lines if "pkg/config.py:6:21" in line)
    assert default_named.startswith("FAIL") and "does not match" in default_named
    assert "passed: 4/6 (66.7%)" in run.stdout
    assert "p95" in run.stdout and "load" in run.stdout
    assert "result: OK (exit 0)" in run.stdout
    assert " INFO " not in run.stdout and " INFO codehone.check: starting" in run.stderr

    cases = junit_cases(junit)
    assert len(cases) == 6
    assert cases["impossible"].find("failure") is not None
    message = cases["impossible"].find("failure").get("message")  # type: ignore[union-attr]
    assert message == "not equal to '<impossible>'"
    assert cases["marker equals"].find("failure") is None
    assert cases["second marker, menu"].get("classname") == "codehone.check.run.completion"
    assert cases["marker equals"].get("classname") == "codehone.check.run.inline"
    assert cases["marker equals"].get("file") == "pkg/config.py"
    thresholds = ET.parse(junit).getroot().findall("testsuite")[1].findall("testcase")
    assert len(thresholds) == 3 and all(t.find("failure") is None for t in thresholds)


def test_threshold_failure_exits_1(
    project: Path, answers: dict[str, str | None], tmp_path: Path, capsys: pytest.CaptureFixture
):
    """The same cases with every case required to pass: exit 1, and JUnit says why."""
    cases = write_cases(project, mixed_cases(answers), "strict.toml")
    junit = tmp_path / "out.xml"
    code = main(
        [
            "check",
            str(project),
            "--cases",
            str(cases),
            "--min-pass-rate",
            "1",
            "--junit",
            str(junit),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1, out
    assert "FAILED  pass rate >= 100.0% (got 66.7%)" in out
    assert "result: FAILED (exit 1): pass rate" in out
    suites = ET.parse(junit).getroot().findall("testsuite")
    failed = [t for t in suites[1].findall("testcase") if t.find("failure") is not None]
    assert [t.get("name") for t in failed] == ["pass rate >= 100.0%"]


def test_sampled_lines(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    """No cases file: held-out lines, cut at a seeded random point, the rest expected back."""
    (project / ".codehone" / "checks.toml").unlink(missing_ok=True)
    junit = tmp_path / "sampled.xml"
    args = ["check", str(project), "--samples", "4", "--junit", str(junit)]
    assert main([*args, "--min-exact-match", "0"]) == 0
    out = capsys.readouterr().out
    assert "exact match:" in out and "4 lines sampled from" in out
    cases = junit_cases(junit)
    assert len(cases) == 4
    for name, case in cases.items():  # name = FILE:LINE:COLUMN, the cursor in the real file
        path, line, column = name.rsplit(":", 2)
        source = (project / path).read_text(encoding="utf-8").split("\n")[int(line) - 1]
        target = source[int(column) - 1 :].strip()
        failure = case.find("failure")
        if failure is not None:
            assert failure.get("message") == f"expected {target!r}"

    # The same seed samples the same lines; a random model cannot complete them all.
    assert main([*args, "--min-exact-match", "1.0"]) == 1
    assert set(junit_cases(junit)) == set(cases)
    assert "FAILED  exact match >= 100.0%" in capsys.readouterr().out


def test_no_model_selected(tmp_path: Path, capsys: pytest.CaptureFixture):
    (tmp_path / "a.py").write_text("x = 1\n", encoding="utf-8")
    junit = tmp_path / "j.xml"
    assert main(["check", str(tmp_path), "--junit", str(junit)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("codehone: error: ") and "no model selected" in err[-1]
    assert "--model" in err[-1]
    error = ET.parse(junit).getroot().find("testsuite/testcase/error")
    assert error is not None and "no model selected" in error.get("message", "")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "cases file does not exist"),
        ("[[case]\nfile = 1", "not valid TOML"),
        ("[thresholds]\nmin_pass_rate = 0.5\n", "no cases"),
        ('[[cases]]\nfile = "pkg/config.py"\n', "unknown key 'cases' (cases are [[case]] tables)"),
        ('[[case]]\nfile = "pkg/nope.py"\nline = 1\n', "nope.py' does not exist"),
        ('[[case]]\nfile = "pkg/config.py"\nline = 400\n', "line 400 is past the end"),
        ('[[case]]\nfile = "pkg/config.py"\nline = 1\ncolumn = 99\n', "column 99 is past the end"),
        ('[[case]]\nfile = "pkg/config.py"\nmarker = "<NOPE>"\n', "marker '<NOPE>' not found"),
        ('[[case]]\nfile = "pkg/config.py"\nafter = "zzz"\n', "text 'zzz' not found"),
        ('[[case]]\nfile = "pkg/config.py"\nline = 1\nmatches = "("\n', "not a valid regular"),
        ('[[case]]\nfile = "pkg/config.py"\nline = 1\nkind = "hover"\n', "`kind` must be one of"),
        ('[[case]]\nfile = "pkg/config.py"\nline = 1\nafter = "x"\n', "exactly one cursor"),
        ('[[case]]\nfile = "pkg/config.py"\n', "exactly one cursor"),
        ('[[case]]\nfile = "pkg/config.py"\nline = 1\nequal = "x"\n', "unknown key 'equal'"),
        (
            '[thresholds]\nmin_pass_rate = 90\n[[case]]\nfile = "pkg/config.py"\nline = 1\n',
            "between 0 and 1",
        ),
    ],
)
def test_bad_cases_file(
    project: Path, tmp_path: Path, body: str | None, message: str, capsys: pytest.CaptureFixture
):
    """Bad input: one line naming the problem, exit 2, before any server starts."""
    cases = tmp_path / "checks.toml"
    if body is not None:
        cases.write_text(body, encoding="utf-8")
    assert main(["check", str(project), "--cases", str(cases)]) == 2
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.startswith("codehone: error: ")]
    assert len(err) == 1 and message in err[0], captured.err
    assert "starting" not in captured.err  # no server was started
    assert str(cases) in err[0]


def test_bad_options(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    cases = write_cases(project, '[[case]]\nfile = "pkg/config.py"\nline = 1\n', "one.toml")
    for args, message in [
        (["--cases", str(cases), "--samples", "3"], "--samples: for sampled lines only"),
        (["--sample", "--min-exact-match", "5"], "between 0 and 1"),
        (["--sample", "--samples", "0"], "--samples must be at least 1"),
        (["--sample", "--min-pass-rate", "0.5"], "--min-pass-rate applies to a cases file"),
        (["--cases", str(cases), "--max-p95-ms", "-1"], "--max-p95-ms must be a positive"),
        (["--model", str(tmp_path / "nowhere"), "--cases", str(cases)], "does not exist"),
    ]:
        assert main(["check", str(project), *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
    assert main(["check", str(tmp_path / "missing-project")]) == 2
    assert "project directory does not exist" in capsys.readouterr().err


def test_model_fails_to_load(
    project: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    """A model whose manifest is fine but whose graph is garbage: the server exits at load;
    its own one-line error is reported, exit 2, JUnit says so."""
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.onnx").write_bytes(b"\x08\x07garbage" * 10)
    cases = write_cases(project, '[[case]]\nfile = "pkg/config.py"\nline = 1\n', "one.toml")
    junit = tmp_path / "j.xml"
    code = main(
        [
            "check",
            str(project),
            "--cases",
            str(cases),
            "--model",
            str(broken),
            "--junit",
            str(junit),
        ]
    )
    captured = capsys.readouterr()
    assert code == 2
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("codehone: error: the server exited (code 2) during initialize: ")
    assert "model.onnx" in last
    assert "1 of 1 cases not run" in captured.out
    root = ET.parse(junit).getroot()
    assert root.find("testsuite/testcase/error") is not None  # the case: not run
    server = [t for t in root.iter("testcase") if t.get("name") == "server"]
    assert server and "exited (code 2)" in server[0].find("error").get("message", "")  # type: ignore[union-attr]


@pytest.fixture
def fake_server(tmp_path: Path) -> Path:
    path = tmp_path / "fake_server.py"
    path.write_text(FAKE_SERVER, encoding="utf-8")
    return path


def fake_command(script: Path, mode: str, pid_file: Path | None = None) -> str:
    wrapper = f"{sys.executable} {script} {mode}"
    if pid_file is None:
        return wrapper
    return f"sh -c 'echo $$ > {pid_file}; exec {wrapper}' --"


def test_server_dies_mid_run(project: Path, fake_server: Path, capsys: pytest.CaptureFixture):
    """Dies at the 3rd request (warm-up, case 1, then case 2): case 1's result is kept, the
    rest are not run, the server's last words are in the one-line error, exit 2."""
    cases = write_cases(
        project,
        """
        [[case]]
        name = "first"
        file = "pkg/config.py"
        line = 1
        equals = "fake"
        [[case]]
        name = "second"
        file = "pkg/config.py"
        line = 2
        [[case]]
        name = "third"
        file = "pkg/config.py"
        line = 3
        """,
        "three.toml",
    )
    code = main(
        [
            "check",
            str(project),
            "--cases",
            str(cases),
            "--serve-command",
            fake_command(fake_server, "die:3"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert any(line.startswith("PASS") and "first" in line for line in captured.out.splitlines())
    assert "2 of 3 cases not run" in captured.out
    last = captured.err.strip().splitlines()[-1]
    assert last == (
        "codehone: error: the server exited (code 3) during textDocument/inlineCompletion: "
        "fake server: crashed on purpose"
    )


def test_server_never_answers(
    project: Path, fake_server: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    """Silent at start-up, then silent on a request: each wait ends at its limit, exit 2, and
    the server process is gone afterwards."""
    cases = write_cases(project, '[[case]]\nfile = "pkg/config.py"\nline = 1\n', "one.toml")
    pid_file = tmp_path / "pid"
    silent = f"sh -c 'echo $$ > {pid_file}; exec sleep 300' --"
    code = main(
        [
            "check",
            str(project),
            "--cases",
            str(cases),
            "--start-timeout",
            "2",
            "--serve-command",
            silent,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "the server did not answer initialize within 2 s" in err.strip().splitlines()[-1]
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

    code = main(
        [
            "check",
            str(project),
            "--cases",
            str(cases),
            "--timeout",
            "1",
            "--serve-command",
            fake_command(fake_server, "hang:2"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        "codehone: error: the server did not answer textDocument/inlineCompletion within 1 s"
    )


def test_server_answers_errors(project: Path, fake_server: Path, tmp_path: Path, capsys):
    """Error answers fail their cases (exit 1) without stopping the run."""
    cases = write_cases(
        project,
        '[[case]]\nname = "a"\nfile = "pkg/config.py"\nline = 1\n'
        '[[case]]\nname = "b"\nfile = "pkg/config.py"\nline = 2\nkind = "completion"\n',
        "two.toml",
    )
    junit = tmp_path / "j.xml"
    code = main(
        [
            "check",
            str(project),
            "--cases",
            str(cases),
            "--junit",
            str(junit),
            "--serve-command",
            fake_command(fake_server, "error"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert sum(line.startswith("ERROR") for line in out.splitlines()) == 2
    assert "boom" in out
    errors = list(ET.parse(junit).getroot().iter("error"))
    assert len(errors) == 2 and all("boom" in e.get("message", "") for e in errors)


def test_junit_is_valid_for_any_completion_text(tmp_path: Path):
    """Completions of a random model hold anything: the XML must still parse."""
    from codehone.check.cases import CheckCase, Expectation
    from codehone.check.report import CaseResult, CheckReport, junit_xml

    weird = "\x00\x1b[31m]]></x>&\ud800\uffff\U0001f600 \"'"
    case = CheckCase(weird, tmp_path / "a.py", "x", 1, expect=Expectation(equals=weird))
    report = CheckReport(tmp_path, tmp_path, weird, weird, "cases")
    report.results.append(CaseResult(case, weird, 1.0, case.expect.failures("other")))
    data = junit_xml(report)
    root = ET.fromstring(data)
    assert root.find("testsuite/testcase/failure") is not None
    assert data.decode("utf-8").startswith("<?xml")


def test_sampled_lines_prefer_the_prepared_test_split(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture
):
    """With a data set (what `codehone tune` leaves in .codehone/data, or --data), the lines
    come from its test split: the files the tuned model never trained on."""
    from codehone.check.cases import sampled_cases
    from codehone_training.data.project import (
        DATASET_FILE,
        DATASET_FORMAT,
        DATASET_VERSION,
        SourceFile,
        write_split,
    )
    from codehone_training.evaluation.cases import line_cases

    data = tmp_path / ".codehone" / "data"
    data.mkdir(parents=True)
    (data / DATASET_FILE).write_text(
        json.dumps({"format": DATASET_FORMAT, "version": DATASET_VERSION}), encoding="utf-8"
    )
    held_out = [SourceFile("held/out.py", "python", "def area(r):\n    return 3.14159 * r * r\n")]
    write_split(data / "test.jsonl", held_out)
    cases, source = sampled_cases(tmp_path, 2, seed=0)
    assert source == f"the test split of {data}"
    want = line_cases(held_out, 2, 0)  # codehone eval's own sampling, same seed
    assert [(c.text, c.offset) for c in cases] == [(w.text, w.offset) for w in want]
    assert all(c.path == tmp_path / "held" / "out.py" for c in cases)

    model = ["--model", str(tiny_model_dir)]
    assert main(["check", str(tmp_path), *model, "--data", str(tmp_path / "nope")]) == 2
    assert "nope: not a codehone data set" in capsys.readouterr().err
