"""The table a run prints, its ratios and the goals' verdicts.

A codehone row is compared with the llama.cpp rows of the same run, prompt length and
condition at the *matched width* (int8 with Q8_0, int4 with Q4_0/Q4_1, fp32/fp16 with F32/F16;
``config.width_class``), and with llama.cpp's best format there for each figure: the ratio is
codehone's time over that best time (below 1: codehone is faster). On random-weight shapes the
ratios are to Hugging Face eager (HF) and optimum (ORT) instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from codehone.tools.bench_engine.config import REFERENCE_TOKENS, Row

# The issue's goals on the CPU (2 cores, SmolLM2-135M), against llama.cpp at the matched width.
DECODE_RATIO_GOAL = 0.7
TTFT_RATIO_GOAL = 0.5
TTFT_GOAL_MS = 400.0
TTFT_GOAL_PROMPT = 512
INT4_DECODE_GOAL_MS = 4.5
TYPING_GOAL_MS = 30.0
# The H100 goals of the random-weight shapes (fp16): per-token ms, TTFT ms (512), typing ms.
GPU_DECODE_GOALS = {"gpt2-124m": 1.0, "qwen2.5-coder-0.5b": 2.0}
GPU_TTFT_GOAL_MS = 5.0
GPU_TYPING_GOAL_MS = 2.0

Metric = Callable[[Row], float | None]
METRICS: dict[str, Metric] = {
    "ttft": lambda r: r.ttft_ms,
    "decode": lambda r: r.ms_per_token,
    "typing": lambda r: r.typing_ms,
}


def best_matched(
    row: Row, rows: Sequence[Row], metric: Metric, kind: str = "llama.cpp"
) -> Row | None:
    """The ``kind`` row of the same prompt length, condition and width class as ``row`` with
    the lowest ``metric`` (llama.cpp's best format at the matched width)."""
    candidates = [
        r
        for r in rows
        if r.kind == kind
        and not r.error
        and r.prompt_tokens == row.prompt_tokens
        and r.condition == row.condition
        and r.width_class == row.width_class
        and metric(r) is not None
    ]
    return min(candidates, key=lambda r: metric(r) or 0.0, default=None)


def ratio(mine: float | None, theirs: float | None) -> float | None:
    if mine is None or not theirs:
        return None
    return mine / theirs


def matched_ratio(row: Row, rows: Sequence[Row], what: str) -> tuple[float | None, Row | None]:
    """codehone's ``what`` (ttft, decode, typing) over llama.cpp's best at the matched width."""
    metric = METRICS[what]
    best = best_matched(row, rows, metric)
    return ratio(metric(row), metric(best) if best else None), best


def _baseline(row: Row, rows: Sequence[Row], contender: str) -> Row | None:
    """The same-prompt, same-condition row of a named contender (hf-eager, optimum)."""
    return next(
        (
            r
            for r in rows
            if r.contender == contender
            and r.prompt_tokens == row.prompt_tokens
            and r.condition == row.condition
            and not r.error
        ),
        None,
    )


def _baseline_ratio(row: Row, base: Row | None, what: str) -> float | None:
    metric = METRICS[what]
    return ratio(metric(row), metric(base) if base else None)


def _fmt(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0] or 0)
    return format(value, spec) if value is not None else "-".rjust(width)


def _mismatch(row: Row) -> str:
    if row.mismatches is None:
        return "-"
    if row.mismatches == 0:
        return "0"
    return f"{row.mismatches} @{row.first_mismatch}"


def format_table(rows: Sequence[Row]) -> list[str]:
    """The table: one line per contender and prompt length, ratios for codehone's rows."""
    with_llama = any(r.kind == "llama.cpp" for r in rows)
    with_hf = any(r.kind in ("hf-eager", "optimum") for r in rows)
    name_width = max([24, *(len(r.contender) for r in rows)])
    header = (
        f"{'prompt':>6} {'contender':<{name_width}} {'width':<5} {'cond.':<7} "
        f"{'TTFT ms':>8} {'ms/tok':>7} {'tok/s':>6} {'typing':>7} {'RSS MiB':>7} "
        f"{f'!=PT/{REFERENCE_TOKENS}':>8}"
    )
    if with_llama:
        header += f" {'TTFT/ll':>7} {'tok/ll':>6} {'typ/ll':>6} {'vs':<9}"
    if with_hf:
        header += f" {'t/HF':>5} {'t/ORT':>5} {'TTFT/HF':>7} {'TTFT/ORT':>8}"
    lines = [header + "  note"]
    for row in sorted(rows, key=lambda r: r.prompt_tokens):
        start = f"{row.prompt_tokens:>6} {row.contender:<{name_width}} {row.width:<5} {row.condition:<7}"
        if row.error:
            lines.append(f"{start} failed: {row.error}")
            continue
        line = (
            f"{start} {_fmt(row.ttft_ms, '8.1f')} {_fmt(row.ms_per_token, '7.2f')} "
            f"{_fmt(row.tokens_per_s, '6.0f')} {_fmt(row.typing_ms, '7.1f')} "
            f"{_fmt(row.rss_mib, '7.0f')} {_mismatch(row):>8}"
        )
        mine = row.is_codehone
        if with_llama:
            figures = [matched_ratio(row, rows, what) if mine else (None, None) for what in METRICS]
            decode_best = figures[1][1]
            line += (
                f" {_fmt(figures[0][0], '7.2f')} {_fmt(figures[1][0], '6.2f')} "
                f"{_fmt(figures[2][0], '6.2f')} {(decode_best.width if decode_best else '-'):<9}"
            )
        if with_hf:
            hf, ort_row = _baseline(row, rows, "hf-eager"), _baseline(row, rows, "optimum")
            shown = [
                _baseline_ratio(row, base, what) if mine else None
                for base, what in (
                    (hf, "decode"),
                    (ort_row, "decode"),
                    (hf, "ttft"),
                    (ort_row, "ttft"),
                )
            ]
            line += (
                f" {_fmt(shown[0], '5.2f')} {_fmt(shown[1], '5.2f')} "
                f"{_fmt(shown[2], '7.2f')} {_fmt(shown[3], '8.2f')}"
            )
        lines.append(f"{line}  {row.note}".rstrip())
    return lines


def _verdict(value: float, goal: float, unit: str) -> str:
    if value <= goal:
        return f"met ({value:.2f}{unit}, goal <= {goal:g}{unit}, {100 * (1 - value / goal):.0f}% under)"
    return (
        f"NOT met ({value:.2f}{unit}, goal <= {goal:g}{unit}, {100 * (value / goal - 1):.0f}% over)"
    )


def cpu_goal_lines(rows: Sequence[Row]) -> list[str]:
    """The CPU goals, checked on each codehone row without speculation (which has rows of its
    own) against llama.cpp's best format at the matched width, per condition."""
    lines = ["# goals (CPU, against llama.cpp's best format at the matched width):"]
    plain = [r for r in rows if r.is_codehone and not r.error and "+" not in r.contender]
    for row in sorted(plain, key=lambda r: (r.condition, r.prompt_tokens, r.contender)):
        where = f"{row.contender} [{row.condition}] {row.prompt_tokens}:"
        checks: list[str] = []
        decode, best = matched_ratio(row, rows, "decode")
        if decode is not None and best is not None:
            checks.append(f"decode vs {best.width} {_verdict(decode, DECODE_RATIO_GOAL, 'x')}")
        if row.width == "int4" and row.ms_per_token is not None:
            checks.append(f"int4 decode {_verdict(row.ms_per_token, INT4_DECODE_GOAL_MS, ' ms')}")
        if row.prompt_tokens == TTFT_GOAL_PROMPT and row.ttft_ms is not None:
            ttft, best = matched_ratio(row, rows, "ttft")
            if ttft is not None and best is not None:
                checks.append(f"TTFT vs {best.width} {_verdict(ttft, TTFT_RATIO_GOAL, 'x')}")
            checks.append(f"TTFT {_verdict(row.ttft_ms, TTFT_GOAL_MS, ' ms')}")
        if row.typing_ms is not None:
            checks.append(f"typing {_verdict(row.typing_ms, TYPING_GOAL_MS, ' ms')}")
        if row.mismatches is not None:
            agreement = (
                f"{row.mismatches}/{REFERENCE_TOKENS} greedy tokens differ from PyTorch's"
                + (f" (first at {row.first_mismatch})" if row.mismatches else "")
            )
            if row.width_class == "float":
                agreement += ": " + ("met" if row.mismatches == 0 else "NOT met (goal: equal)")
            checks.append(agreement)
        lines += [f"#   {where}", *(f"#     {check}" for check in checks)]
    return lines


def gpu_goal_lines(rows: Sequence[Row]) -> list[str]:
    """The random-weight shapes' H100 goals (fp16), checked against the best codehone rows."""
    lines = ["# goals (H100, fp16):"]
    mine = [r for r in rows if r.is_codehone and not r.error]
    for shape, limit in GPU_DECODE_GOALS.items():
        best = [r.ms_per_token for r in mine if r.model == shape and r.ms_per_token]
        if best:
            lines.append(f"#   {shape}: per-token {_verdict(min(best), limit, ' ms')}")
        ttft = [
            r.ttft_ms
            for r in mine
            if r.model == shape
            and r.prompt_tokens == TTFT_GOAL_PROMPT
            and r.contender in ("codehone", "codehone+graph")
            and r.ttft_ms
        ]
        if ttft:
            lines.append(
                f"#   {shape}: TTFT, 512-token prompt {_verdict(min(ttft), GPU_TTFT_GOAL_MS, ' ms')}"
            )
        typing = [
            r.typing_ms
            for r in mine
            if r.model == shape and r.prompt_tokens == TTFT_GOAL_PROMPT and r.typing_ms
        ]
        if typing:
            lines.append(f"#   {shape}: typing {_verdict(min(typing), GPU_TYPING_GOAL_MS, ' ms')}")
    return lines


def goal_lines(rows: Sequence[Row], device: str) -> list[str]:
    """The goals that apply to this run."""
    if any(r.kind == "llama.cpp" for r in rows) and device == "cpu":
        return cpu_goal_lines(rows)
    if device == "cuda" and any(r.model in GPU_DECODE_GOALS for r in rows):
        return gpu_goal_lines(rows)
    return [
        "# goals: stated for the H100 (random-weight shapes, fp16) and for the CPU against "
        "llama.cpp (--model with --llama-cpp); neither applies to this run"
    ]


def load_line(loads: Sequence[float]) -> str:
    if not loads:
        return "# load average: not available"
    ordered = sorted(loads)
    return (
        f"# load average (1 min) during the run: min {ordered[0]:.2f}, "
        f"median {ordered[len(ordered) // 2]:.2f}, max {ordered[-1]:.2f}"
    )
