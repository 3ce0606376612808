"""`codehone bench engine`: codehone's decode engine against the runtimes people would use
instead, side by side in one run, on the same token ids, with the output checked.

Why it exists: latency claims only mean something when measured in one run, on the same
prompts, against the alternatives, with the output checked at the same time. On real weights
(``--model DIR --llama-cpp GGUF``) the alternative is llama.cpp (the runtime of most
self-hosted completion servers) on a GGUF of the same weights; on random-weight shapes it is
Hugging Face transformers and optimum. The package, by job:

- ``config``: the settings, the contender specs (widths, conditions), the rows;
- ``models``: the models (real, or random shapes built once) and the prompts;
- ``contenders``: codehone, transformers and optimum as their worker runs them;
  ``llama_cpp``: the llama.cpp contender and the GGUF file type;
- ``worker``: one process per contender, and the handle the run drives it by;
- ``runner``: the interleaved turns and their medians; ``report``: the table, the ratios at
  the matched width and the goals; ``bench``: ``run_bench``, the two modes end to end.
"""

from codehone.tools.bench_engine.bench import ALL_CONTENDERS, BENCH_DRAFT_TOKENS, run_bench
from codehone.tools.bench_engine.config import BenchConfig, Row

__all__ = ["ALL_CONTENDERS", "BENCH_DRAFT_TOKENS", "BenchConfig", "Row", "run_bench"]
