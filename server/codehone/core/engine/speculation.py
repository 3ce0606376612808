"""Prompt-lookup speculation: a greedy step that checks a guess of the next few tokens at once.

Code repeats itself, so when the last tokens occurred earlier in the text, the tokens that
followed them there are a good guess of what comes next. The guess (the draft) is fed along
with the step's token in one model call, which returns the model's own greedy choice after
each position; the draft tokens it agrees with are kept, up to the first it does not, and the
cache is cut back to them. The output is exactly the greedy output, in fewer model calls. It
needs a graph that returns the arg-max of several positions (the fused graph).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic

import numpy as np

from codehone.core.engine.loop import Step
from codehone.core.engine.protocol import CacheT
from codehone.core.providers import ProviderChoice

# Speculative tokens per step an engine drafts unless told otherwise. 0: off; the server asks
# for SERVING_DRAFT_TOKENS on the CPU (serving_draft_tokens).
DEFAULT_DRAFT_TOKENS = 0
# What `codehone serve` drafts on the CPU. Measured with `codehone bench engine --draft-tokens 6`
# on SmolLM2-135M continuing real code, 2 cores (the README's "Against llama.cpp"): for the
# served int8 model, 48 tokens after a 1,500-token prompt (81% of drafts accepted) decode
# 1.6-3.8x faster; after a 512-token prompt (18% accepted) 1.0-2.6x; fp32 and int4 lost up to
# 25% there, where few drafts hold. The output is the greedy output either way. Not on CUDA:
# not measured there yet.
SERVING_DRAFT_TOKENS = 6
# Longest and shortest n-gram matched against the text so far.
_DRAFT_NGRAM_MAX = 3
_DRAFT_NGRAM_MIN = 2


def serving_draft_tokens(provider: ProviderChoice) -> int:
    """The draft tokens per step the server's engine uses on ``provider``."""
    return 0 if provider.is_cuda else SERVING_DRAFT_TOKENS


@dataclass
class SpeculationStats:
    """Prompt-lookup speculation over the engine's lifetime."""

    steps: int = 0  # model calls that carried a draft
    drafted_tokens: int = 0
    accepted_tokens: int = 0


def prompt_lookup_draft(
    sequence: np.ndarray, length: int, max_tokens: int, ngram_max: int = _DRAFT_NGRAM_MAX
) -> list[int]:
    """Draft tokens by prompt lookup: find the latest earlier occurrence of the last n tokens
    of ``sequence[:length]`` (longest n first) and propose the tokens that followed it."""
    if max_tokens <= 0:
        return []
    for n in range(min(ngram_max, length - 1), _DRAFT_NGRAM_MIN - 1, -1):
        tail = sequence[length - n : length]
        starts = np.flatnonzero(sequence[: length - n] == tail[0])
        for j in range(1, n):
            starts = starts[sequence[starts + j] == tail[j]]
        if starts.size:
            follow = int(starts[-1]) + n
            return sequence[follow : min(follow + max_tokens, length)].tolist()
    return []


# The model call speculation rides on: the greedy next token after each of the last ``keep``
# positions of the tokens fed, and the cache extended by all of them.
NextTokens = Callable[[list[int], CacheT, int], tuple[list[int], CacheT]]


class SpeculativeStep(Generic[CacheT]):
    """One generation's greedy step with a prompt-lookup draft of up to ``draft_tokens``.

    The text searched (the prompt, then the generated tokens) is kept in one array sized for
    the whole context, extended with the tokens generated since the last step."""

    def __init__(
        self,
        next_tokens: NextTokens[CacheT],
        truncate: Callable[[CacheT, int], CacheT],
        prompt: Sequence[int],
        context_length: int,
        draft_tokens: int,
        stats: SpeculationStats,
    ) -> None:
        self.next_tokens = next_tokens
        self.truncate = truncate
        self.draft_tokens = draft_tokens
        self.stats = stats
        # A prompt too long for the context is refused by the decode loop, not here.
        self.text = np.zeros(max(len(prompt), context_length) + 1, dtype=np.int64)
        self.text[: len(prompt)] = prompt
        self.prompt_length = self.length = len(prompt)

    def __call__(
        self, fed: list[int], cache: CacheT, generated: list[int], room: int
    ) -> Step[CacheT]:
        # No draft on the prefill (nothing generated yet): it feeds the prompt.
        draft = self._draft(generated, min(self.draft_tokens, room)) if generated else []
        next_ids, cache = self.next_tokens(fed + draft, cache, 1 + len(draft))
        # next_ids[j] follows draft[j - 1]: keep the drafts the model agrees with.
        agreed = 0
        while agreed < len(draft) and draft[agreed] == next_ids[agreed]:
            agreed += 1
        if draft:
            self.stats.steps += 1
            cache = self.truncate(cache, cache.length - (len(draft) - agreed))
        return Step(next_ids[: agreed + 1], cache, drafted=len(draft))

    def _draft(self, generated: list[int], max_tokens: int) -> list[int]:
        new = generated[self.length - self.prompt_length :]
        self.text[self.length : self.length + len(new)] = new
        self.length += len(new)
        return prompt_lookup_draft(self.text, self.length, max_tokens)
