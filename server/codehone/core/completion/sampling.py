"""The sampler behind the alternatives a request for several candidates gets: top-k at a
temperature, seeded by the request, so the same request draws the same candidates.
"""

from __future__ import annotations

import numpy as np

from codehone.core.engine.protocol import Sampler

_SAMPLING_TOP_K = 40


def make_sampler(temperature: float, rng: np.random.Generator) -> Sampler:
    """Sample the next token from the ``_SAMPLING_TOP_K`` likeliest at ``temperature``
    (greedy at 0)."""

    def sample(logits: np.ndarray) -> int:
        if temperature <= 0:
            return int(np.argmax(logits))
        scaled = logits.astype(np.float64) / temperature
        k = min(_SAMPLING_TOP_K, scaled.shape[-1])
        top = np.argpartition(scaled, -k)[-k:]
        weights = np.exp(scaled[top] - scaled[top].max())
        return int(top[rng.choice(k, p=weights / weights.sum())])

    return sample
