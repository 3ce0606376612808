"""Results of ``codehone check``: per-case lines, the summary, thresholds, JUnit XML."""

from __future__ import annotations

import contextlib
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from codehone.check.cases import CheckCase
from codehone.core.errors import CodehoneError
from codehone.core.percentiles import percentile

PREVIEW_CHARS = 60
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def preview(text: str | None, limit: int = PREVIEW_CHARS) -> str:
    """A completion as shown: repr, truncated; ``None`` when nothing came back."""
    if text is None:
        return "(none)"
    if len(text) > limit:
        return repr(text[:limit]) + "…"
    return repr(text)


@dataclass
class CaseResult:
    case: CheckCase
    text: str | None = None
    latency_ms: float | None = None
    failures: list[str] = field(default_factory=list)
    error: str | None = None  # the server answered an error, or the case never ran

    @property
    def passed(self) -> bool:
        return self.error is None and not self.failures

    @property
    def status(self) -> str:
        return "PASS" if self.passed else ("ERROR" if self.error is not None else "FAIL")

    @property
    def reason(self) -> str:
        return self.error if self.error is not None else "; ".join(self.failures)


@dataclass
class ThresholdResult:
    name: str
    limit: str
    actual: str
    ok: bool

    def line(self) -> str:
        return (
            f"  {'ok    ' if self.ok else 'FAILED'}  {self.name} {self.limit} (got {self.actual})"
        )


@dataclass
class CheckReport:
    project: Path
    model: Path
    model_source: str
    cases_source: str
    mode: str  # cases | sampled
    results: list[CaseResult] = field(default_factory=list)
    thresholds: list[ThresholdResult] = field(default_factory=list)
    initialize_seconds: float | None = None
    load_seconds: float | None = None
    provider: str | None = None
    served_model: str | None = None
    fatal: str | None = None  # the server failed: the run is incomplete
    seconds: float = 0.0

    @property
    def latencies(self) -> list[float]:
        return [r.latency_ms for r in self.results if r.latency_ms is not None and r.error is None]

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def pass_rate(self) -> float:
        return self.passed / len(self.results) if self.results else 0.0

    @property
    def exit_code(self) -> int:
        if self.fatal is not None:
            return 2
        return 0 if all(t.ok for t in self.thresholds) else 1


def case_line(result: CaseResult, name_width: int) -> str:
    latency = f"{result.latency_ms:8.1f} ms" if result.latency_ms is not None else "       - ms"
    line = f"{result.status:5}  {result.case.name:<{name_width}}  {latency}  {preview(result.text)}"
    if not result.passed:
        line += f"  <- {result.reason}"
    return line


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def summary_lines(report: CheckReport) -> list[str]:
    total = len(report.results)
    what = "exact match" if report.mode == "sampled" else "passed"
    lines = [
        "",
        f"{what}: {report.passed}/{total} ({100 * report.pass_rate:.1f}%)   "
        f"latency p50 {_ms(percentile(report.latencies, 50))}, "
        f"p95 {_ms(percentile(report.latencies, 95))}   "
        + (f"load {report.load_seconds:.2f} s" if report.load_seconds is not None else "load -")
        + (
            f" (initialize {report.initialize_seconds:.2f} s)"
            if report.initialize_seconds is not None
            else ""
        ),
    ]
    if report.served_model or report.provider:
        lines.append(f"served by {report.served_model or report.model} on {report.provider or '?'}")
    if report.thresholds:
        lines.append("thresholds:")
        lines.extend(t.line() for t in report.thresholds)
    if report.fatal is not None:
        lines.append(f"result: ERROR (exit 2): {report.fatal}")
    else:
        failed = [t.name for t in report.thresholds if not t.ok]
        lines.append(
            f"result: FAILED (exit 1): {', '.join(failed)}" if failed else "result: OK (exit 0)"
        )
    return lines


# --------------------------------------------------------------------------------------------
# JUnit XML
# --------------------------------------------------------------------------------------------


def _clean(text: str) -> str:
    """Only characters XML 1.0 allows (a completion may hold anything)."""
    return _XML_INVALID.sub("\N{REPLACEMENT CHARACTER}", text)


def _suite(name: str, cases: list[ET.Element], seconds: float, timestamp: str) -> ET.Element:
    suite = ET.Element(
        "testsuite",
        name=_clean(name),
        tests=str(len(cases)),
        failures=str(sum(c.find("failure") is not None for c in cases)),
        errors=str(sum(c.find("error") is not None for c in cases)),
        skipped="0",
        time=f"{seconds:.3f}",
        timestamp=timestamp,
        hostname=_clean(socket.gethostname()),
    )
    suite.extend(cases)
    return suite


def _testcase(classname: str, name: str, seconds: float, file: str | None = None) -> ET.Element:
    element = ET.Element("testcase", classname=classname, name=_clean(name), time=f"{seconds:.3f}")
    if file:
        element.set("file", _clean(file))
    return element


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def junit_xml(report: CheckReport) -> bytes:
    """The report as JUnit XML: a suite with one testcase per case, and a suite with one
    testcase per threshold (and one for a server failure)."""
    timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    cases = []
    for result in report.results:
        element = _testcase(
            f"codehone.check.run.{result.case.kind}",
            result.case.name,
            (result.latency_ms or 0.0) / 1000,
            _relative(result.case.path, report.project),
        )
        details = f"completion: {preview(result.text, 500)}\n"
        if result.latency_ms is not None:
            details += f"latency: {result.latency_ms:.1f} ms\n"
        if result.error is not None:
            child = ET.SubElement(element, "error", message=_clean(result.error), type="error")
            child.text = _clean(details)
        elif result.failures:
            child = ET.SubElement(
                element, "failure", message=_clean("; ".join(result.failures)), type="failure"
            )
            child.text = _clean(details)
        out = ET.SubElement(element, "system-out")
        out.text = _clean(details)
        cases.append(element)
    suite = _suite(f"codehone check: {report.project.name}", cases, report.seconds, timestamp)
    properties = ET.Element("properties")
    for key, value in (
        ("project", str(report.project)),
        ("model", str(report.model)),
        ("model_source", report.model_source),
        ("cases", report.cases_source),
        ("provider", report.provider or ""),
        ("load_seconds", "" if report.load_seconds is None else f"{report.load_seconds:.3f}"),
        ("pass_rate", f"{report.pass_rate:.4f}"),
    ):
        ET.SubElement(properties, "property", name=key, value=_clean(value))
    suite.insert(0, properties)

    checks = []
    for threshold in report.thresholds:
        element = _testcase(
            "codehone.check.run.thresholds", f"{threshold.name} {threshold.limit}", 0.0
        )
        if not threshold.ok:
            ET.SubElement(
                element,
                "failure",
                message=_clean(f"{threshold.name} {threshold.limit}: got {threshold.actual}"),
                type="threshold",
            )
        checks.append(element)
    if report.fatal is not None:
        element = _testcase("codehone.check.run.server", "server", 0.0)
        ET.SubElement(element, "error", message=_clean(report.fatal), type="server")
        checks.append(element)
    suites = [suite, _suite("codehone check: thresholds", checks, 0.0, timestamp)]
    return _document(suites, report.seconds)


def junit_error_xml(message: str) -> bytes:
    """A JUnit document for a check that could not run at all (bad input or config)."""
    timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    element = _testcase("codehone.check.run", "codehone check", 0.0)
    ET.SubElement(element, "error", message=_clean(message), type="input")
    return _document([_suite("codehone check", [element], 0.0, timestamp)], 0.0)


def _document(suites: list[ET.Element], seconds: float) -> bytes:
    root = ET.Element(
        "testsuites",
        name="codehone check",
        tests=str(sum(int(s.get("tests", "0")) for s in suites)),
        failures=str(sum(int(s.get("failures", "0")) for s in suites)),
        errors=str(sum(int(s.get("errors", "0")) for s in suites)),
        time=f"{seconds:.3f}",
    )
    root.extend(suites)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_junit(path: Path, data: bytes) -> None:
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@contextlib.contextmanager
def junit_on_error(junit: Path | None) -> Iterator[None]:
    """A check that cannot run (bad input or config, a server that cannot start) still leaves
    a JUnit file saying why, when one was asked for; the error goes on up."""
    try:
        yield
    except CodehoneError as exc:
        if junit is not None:
            write_junit(junit, junit_error_xml(str(exc)))
        raise
