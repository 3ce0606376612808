"""``codehone check``: headless checks of a project's model and server, for CI.

Starts the real ``codehone serve`` over stdio as an editor would (VS Code's capabilities,
inline completion included), on the model the project's ``.codehone.toml`` selects (``--model``
overrides), and runs check cases: those of ``PROJECT/.codehone/checks.toml`` (format in
``codehone.check.cases``), or, without a cases file, line completions sampled from the
project's held-out files exactly as ``codehone eval`` samples them. It prints one line per
case and a summary, optionally writes JUnit XML, and exits 0 when every threshold holds, 1
when one fails, 2 on bad input or config or a server that fails. Every wait has a limit and the
server process is always gone when it returns.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codehone.check.cases import (
    CASES_FILE,
    CheckCase,
    CheckInputError,
    Thresholds,
    check_fraction,
    check_positive,
)
from codehone.check.report import (
    CaseResult,
    CheckReport,
    ThresholdResult,
    case_line,
    junit_on_error,
    junit_xml,
    summary_lines,
    write_junit,
)
from codehone.core.percentiles import percentile

log = logging.getLogger("codehone.check")

DEFAULT_SAMPLES = 100
DEFAULT_MIN_EXACT_MATCH = 0.05
DEFAULT_SEED = 0  # `codehone tune`'s: its data split and its evaluation's lines
DEFAULT_REQUEST_TIMEOUT = 60.0  # seconds to wait for one completion
DEFAULT_START_TIMEOUT = 300.0  # seconds to wait for the server to start (a first model load)
NOT_RUN = "not run: the server failed"


@dataclass
class CheckOptions:
    project_dir: Path = Path(".")
    model: Path | None = None
    cases: Path | None = None
    sample: bool = False
    samples: int | None = None
    seed: int | None = None
    data: Path | None = None
    min_exact_match: float | None = None
    min_pass_rate: float | None = None
    max_p95_ms: float | None = None
    max_load_seconds: float | None = None
    device: str = "auto"
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    start_timeout: float = DEFAULT_START_TIMEOUT
    serve_command: list[str] | None = None  # None: `python -m codehone serve`
    echo_server: bool = False  # forward the server's stderr to ours


@dataclass(frozen=True)
class ChosenModel:
    """The model directory a check serves and where that choice came from."""

    root: Path
    source: str  # "--model", or the project config file that names it
    projects_own: bool  # the project's config chose it (the project is then the workspace)


@dataclass
class Plan:
    """What a run will do, all of it validated before the server starts."""

    project: Path
    model: ChosenModel
    mode: str  # cases | sampled
    cases_source: str
    cases: list[CheckCase]
    thresholds: Thresholds
    initialization_options: dict[str, Any] | None = field(default=None)


# --------------------------------------------------------------------------------------------
# Planning: the model, the cases, the thresholds
# --------------------------------------------------------------------------------------------


def choose_model(project: Path, override: Path | None) -> ChosenModel:
    """``override`` (``--model``), else the model the project's config selects (validated
    cheaply here; the server loads and checks the graph)."""
    from codehone.core.model_dir import load_model_dir
    from codehone.core.project_config import CONFIG_FILE, find_project_config

    if override is not None:
        return ChosenModel(load_model_dir(override, check_graph=False).root, "--model", False)
    config = find_project_config(project)
    if config is None:
        raise CheckInputError(
            f"{project}: no model selected: no {CONFIG_FILE} (or [tool.codehone] in "
            "pyproject.toml) naming one; pass --model DIR"
        )
    return ChosenModel(config.load_model(check_graph=False).root, str(config.source), True)


def plan_check(options: CheckOptions) -> Plan:
    from codehone.check.cases import load_cases_file, sampled_cases

    project = Path(options.project_dir).expanduser()
    if not project.is_dir():
        raise CheckInputError(f"{project}: project directory does not exist")
    project = project.resolve()
    for name in ("request_timeout", "start_timeout"):
        check_positive(getattr(options, name), f"--{name.replace('_', '-')}")

    cases_path = options.cases
    if cases_path is None and not options.sample and (project / CASES_FILE).is_file():
        cases_path = project / CASES_FILE
    if options.sample and options.cases is not None:
        raise CheckInputError("--sample and --cases exclude each other")
    sampling_flags = [
        flag
        for flag, value in (
            ("--samples", options.samples),
            ("--seed", options.seed),
            ("--data", options.data),
            ("--min-exact-match", options.min_exact_match),
        )
        if value is not None
    ]
    if cases_path is not None and sampling_flags:
        raise CheckInputError(
            f"{', '.join(sampling_flags)}: for sampled lines only, but a cases file is used "
            f"({cases_path}); add --sample to sample lines instead"
        )
    if cases_path is None and options.min_pass_rate is not None:
        raise CheckInputError("--min-pass-rate applies to a cases file; use --min-exact-match")

    chosen = choose_model(project, options.model)  # cheap: no graph loaded
    if cases_path is not None:
        cases_file = load_cases_file(Path(cases_path), project)
        mode, cases, thresholds = "cases", cases_file.cases, cases_file.thresholds
        source = str(cases_file.path)
        init = {"completion": cases_file.options} if cases_file.options else None
        if options.min_pass_rate is not None:
            thresholds.min_pass_rate = check_fraction(options.min_pass_rate, "--min-pass-rate")
    else:
        samples = DEFAULT_SAMPLES if options.samples is None else options.samples
        if samples < 1:
            raise CheckInputError(f"--samples must be at least 1, got {samples}")
        seed = DEFAULT_SEED if options.seed is None else options.seed
        cases, where = sampled_cases(project, samples, seed, options.data)
        mode, source = "sampled", f"{len(cases)} lines sampled from {where} (seed {seed})"
        minimum = (
            DEFAULT_MIN_EXACT_MATCH if options.min_exact_match is None else options.min_exact_match
        )
        thresholds = Thresholds(min_pass_rate=check_fraction(minimum, "--min-exact-match"))
        init = {"completion": {"multiline": "never"}}  # one line, as `codehone eval` asks
    if options.max_p95_ms is not None:
        thresholds.max_p95_latency_ms = check_positive(options.max_p95_ms, "--max-p95-ms")
    if options.max_load_seconds is not None:
        thresholds.max_load_seconds = check_positive(options.max_load_seconds, "--max-load-seconds")
    return Plan(project, chosen, mode, source, cases, thresholds, init)


def evaluate_thresholds(report: CheckReport, thresholds: Thresholds) -> list[ThresholdResult]:
    rate_name = "exact match" if report.mode == "sampled" else "pass rate"
    results = [
        ThresholdResult(
            rate_name,
            f">= {100 * thresholds.min_pass_rate:.1f}%",
            f"{100 * report.pass_rate:.1f}%",
            bool(report.results) and report.pass_rate >= thresholds.min_pass_rate,
        )
    ]
    if thresholds.max_p95_latency_ms is not None:
        p95 = percentile(report.latencies, 95)
        results.append(
            ThresholdResult(
                "p95 latency",
                f"<= {thresholds.max_p95_latency_ms:.0f} ms",
                "-" if p95 is None else f"{p95:.0f} ms",
                p95 is not None and p95 <= thresholds.max_p95_latency_ms,
            )
        )
    if thresholds.max_load_seconds is not None:
        load = report.load_seconds
        results.append(
            ThresholdResult(
                "load time",
                f"<= {thresholds.max_load_seconds:g} s",
                "-" if load is None else f"{load:.2f} s",
                load is not None and load <= thresholds.max_load_seconds,
            )
        )
    return results


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def served_model(status: dict[str, Any], project_uri: str) -> str | None:
    """The model directory ``codehone/status`` says serves the project."""
    for folder in status.get("folders") or []:
        if isinstance(folder, dict) and str(folder.get("folder", "")).rstrip("/") == project_uri:
            if folder.get("model_dir"):
                return str(folder["model_dir"])
    models = [m for m in status.get("models") or [] if isinstance(m, dict) and m.get("model_dir")]
    if not models:
        return None
    return str(max(models, key=lambda m: m.get("completions") or 0)["model_dir"])


async def run_plan(
    plan: Plan, options: CheckOptions, on_result: Callable[[CaseResult], None] | None = None
) -> CheckReport:
    """Run the plan against a fresh server; the server is gone when this returns."""
    from codehone.check.client import EditorSession, ServerFailure, serve_command

    report = CheckReport(
        project=plan.project,
        model=plan.model.root,
        model_source=plan.model.source,
        cases_source=plan.cases_source,
        mode=plan.mode,
    )
    started = time.perf_counter()
    command = serve_command(plan.model.root, options.device, prefix=options.serve_command)
    session = await EditorSession.start(command, echo=options.echo_server)
    pending = list(plan.cases)
    try:
        await session.initialize(
            [plan.project] if plan.model.projects_own else [],
            options.start_timeout,
            initialization_options=plan.initialization_options,
        )
        report.initialize_seconds = time.perf_counter() - session.started
        # Warm-up: the first case, untimed. An editor's user waits this long for the first
        # completion after the server starts: that is the load time.
        first = pending[0]
        uri = session.open(first.path, first.text, first.language_id)
        await session.request(first.kind, uri, first.offset, options.start_timeout)
        session.close_document(uri)
        report.load_seconds = time.perf_counter() - session.started
        while pending:
            case = pending[0]
            uri = session.open(case.path, case.text, case.language_id)
            reply = await session.request(case.kind, uri, case.offset, options.request_timeout)
            session.close_document(uri)
            pending.pop(0)
            result = CaseResult(case, reply.text, reply.latency_ms)
            if reply.error is not None:
                result.error = f"the server answered an error: {reply.error}"
            else:
                result.failures = case.expect.failures(reply.text)
            report.results.append(result)
            if on_result is not None:
                on_result(result)
        status = await session.status(min(options.request_timeout, 10.0))
        if status is not None:
            report.provider = status.get("provider")
            report.served_model = served_model(status, plan.project.as_uri())
            if report.served_model and Path(report.served_model) != plan.model.root:
                log.warning(
                    "the server says it served %s, not %s", report.served_model, plan.model.root
                )
    except ServerFailure as exc:
        report.fatal = str(exc)
        for case in pending:
            report.results.append(CaseResult(case, error=NOT_RUN))
    finally:
        await session.close()
        report.seconds = time.perf_counter() - started
    if report.fatal is None:  # an incomplete run is an error (exit 2), not a threshold miss
        report.thresholds = evaluate_thresholds(report, plan.thresholds)
    return report


def run_check(
    options: CheckOptions, out: Callable[[str], None] = print, junit: Path | None = None
) -> int:
    """Plan, run and report; the exit code (bad input raises CheckInputError / CodehoneError,
    after writing the JUnit file when one was asked for)."""
    with junit_on_error(junit):
        plan = plan_check(options)
    out(
        f"codehone check: {plan.project}\n"
        f"  model: {plan.model.root} (from {plan.model.source})\n"
        f"  cases: {len(plan.cases)} from {plan.cases_source}"
    )
    width = min(48, max(len(c.name) for c in plan.cases))
    with junit_on_error(junit):  # the server could not even be started
        report = asyncio.run(run_plan(plan, options, lambda r: out(case_line(r, width))))
    not_run = sum(r.error == NOT_RUN for r in report.results)
    if not_run:
        out(f"({not_run} of {len(report.results)} cases not run: the server failed)")
    for line in summary_lines(report):
        out(line)
    if junit is not None:
        write_junit(junit, junit_xml(report))
        log.info("JUnit XML written to %s", junit)
    if report.fatal is not None:
        print(f"codehone: error: {report.fatal}", file=sys.stderr)
    return report.exit_code
