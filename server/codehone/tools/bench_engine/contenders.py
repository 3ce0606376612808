"""The contenders, as their worker processes run them: codehone's engine, Hugging Face
transformers (PyTorch eager) and optimum's ``ORTModelForCausalLM``; llama.cpp is in
``bench_engine.llama_cpp``.

Each answers the same few requests, timed inside the worker so that only the runtime's own
work is measured:

- ``cold(prompt, n)``: nothing cached; the time to the first token (prefill included) and the
  decode time per token after it, and the ``n`` greedy tokens;
- ``typing(prompt)``: the time to the first token of ``prompt`` right after the previous
  request, which it extends by a few tokens (``None`` where the runtime keeps no cache);
- ``last_logits(prompt)``: the last position's logits, to tell numerics from bugs.

Only what the contender needs is imported: the codehone worker never loads torch, so its
resident memory is what a server's would be.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

from codehone.tools.bench_engine.config import ContenderSpec


class Contender(Protocol):
    def cold(self, prompt: list[int], new_tokens: int) -> dict[str, Any]: ...

    def typing(self, prompt: list[int]) -> dict[str, Any] | None: ...

    def last_logits(self, prompt: list[int]) -> Any: ...

    def describe(self) -> str: ...


class CodehoneContender:
    """codehone's ONNX Runtime engine on a model directory (exported or fused graph)."""

    def __init__(self, spec: ContenderSpec) -> None:
        from codehone.core.engine.session import Engine
        from codehone.core.model_dir import load_model_dir
        from codehone.core.providers import choose_provider

        cuda_graph = bool(spec.options.get("cuda_graph", False))
        self.engine = Engine(
            load_model_dir(spec.path),
            choose_provider("cuda" if spec.device == "cuda" else "cpu"),
            draft_tokens=int(spec.options.get("draft_tokens", 0)),
            cuda_graph=cuda_graph,
            threads=spec.threads,
            spinning=spec.condition == "spin",
        )
        if cuda_graph and not self.engine.cuda_graph:
            raise RuntimeError("CUDA graphs are not available for this model/provider")
        self.spec = spec

    def cold(self, prompt: list[int], new_tokens: int) -> dict[str, Any]:
        from codehone.core.engine.protocol import StopConditions

        self.engine.reset_prefix_cache()  # nothing reused from the previous request
        generation = self.engine.generate(prompt, StopConditions(max_new_tokens=new_tokens))
        return {
            "ttft_ms": generation.prefill_ms,
            "ms_per_token": generation.ms_per_token,
            "tokens": generation.token_ids,
            "drafted": generation.drafted_tokens,
            "accepted": generation.accepted_tokens,
        }

    def typing(self, prompt: list[int]) -> dict[str, Any]:
        from codehone.core.engine.protocol import StopConditions

        started = time.perf_counter()
        generation = self.engine.generate(prompt, StopConditions(max_new_tokens=1))
        return {
            "ms": (time.perf_counter() - started) * 1000,
            "prefilled": len(prompt) - generation.reused_tokens,
        }

    def last_logits(self, prompt: list[int]) -> Any:
        return self.engine.forward(prompt, self.engine.empty_cache())[0]

    def describe(self) -> str:
        import onnxruntime as ort

        info = self.engine.describe()
        text = (
            f"onnxruntime {ort.__version__}, {info['graph']} graph, "
            f"{', '.join(info['optimizations']) or 'exported'}, KV {info['kv_dtype']}"
        )
        if self.spec.device == "cuda":
            text += f"; {memcpy_nodes(Path(self.spec.path))}"
        return text


def memcpy_nodes(model_dir: Path) -> str:
    """How many host<->device copies ONNX Runtime inserted into the optimized graph on CUDA
    (the fused decode step should have none), read back from the optimized model it saves."""
    import tempfile

    import onnx
    import onnxruntime as ort

    from codehone.core.model_dir import load_model_dir

    model = load_model_dir(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", "optimized.onnx.data"
        )
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
        )
        ort.InferenceSession(
            str(model.model_path),
            options,
            providers=[("CUDAExecutionProvider", {"device_id": "0"}), "CPUExecutionProvider"],
        )
        graph = onnx.load(str(Path(tmp) / "optimized.onnx"), load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    copies = sum(op.startswith("Memcpy") for op in ops)
    return f"{copies} memcpy nodes among {len(ops)} nodes after optimization"


class _TimingStreamer:
    """A transformers streamer that notes when each new token arrives (the first ``put`` is
    the prompt)."""

    def __init__(self, sync: Any) -> None:
        self.sync = sync
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.sync()
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


class _GenerateContender:
    """A transformers-style ``generate`` (HF eager or optimum): no cache between requests."""

    def __init__(self, model: Any, device: str) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.device = device
        model.generation_config.eos_token_id = None  # exactly N greedy tokens
        model.generation_config.pad_token_id = 0
        self.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def cold(self, prompt: list[int], new_tokens: int) -> dict[str, Any]:
        torch = self.torch
        ids = torch.tensor([prompt], device=self.device)
        streamer = _TimingStreamer(self.sync)
        self.sync()
        started = time.perf_counter()
        with torch.no_grad():
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                do_sample=False,
                num_beams=1,
                streamer=streamer,
            )
        first, last = streamer.times[0], streamer.times[-1]
        return {
            "ttft_ms": (first - started) * 1000,
            "ms_per_token": (last - first) * 1000 / max(1, new_tokens - 1),
            "tokens": out[0, len(prompt) :].tolist(),
        }

    def typing(self, prompt: list[int]) -> None:
        return None  # no KV cache kept between requests

    def describe(self) -> str:
        return ""


class HFContender(_GenerateContender):
    """Hugging Face transformers, PyTorch eager attention (fp16 on CUDA): the reference."""

    def __init__(self, spec: ContenderSpec) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        if spec.threads:
            torch.set_num_threads(spec.threads)
        dtype = torch.float16 if spec.device == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(
            spec.path, dtype=dtype, attn_implementation="eager", use_safetensors=True
        ).to(spec.device)
        model.eval()
        super().__init__(model, spec.device)

    def last_logits(self, prompt: list[int]) -> Any:
        torch = self.torch
        with torch.no_grad():
            out = self.model(input_ids=torch.tensor([prompt], device=self.device))
        return out.logits[0, -1].float().cpu().numpy()

    def describe(self) -> str:
        return f"torch {self.torch.__version__}, {self.model.dtype}, eager attention"


class OptimumContender(_GenerateContender):
    """optimum's ORTModelForCausalLM on the exported graph (IO binding on CUDA)."""

    def __init__(self, spec: ContenderSpec) -> None:
        import onnxruntime as ort
        from optimum.onnxruntime import ORTModelForCausalLM

        provider = "CUDAExecutionProvider" if spec.device == "cuda" else "CPUExecutionProvider"
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if spec.threads:
            options.intra_op_num_threads = spec.threads
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if spec.condition == "spin" else "0"
        )
        model = ORTModelForCausalLM.from_pretrained(
            spec.path,
            provider=provider,
            use_io_binding=spec.device == "cuda",
            session_options=options,
        )
        super().__init__(model, spec.device)

    def last_logits(self, prompt: list[int]) -> Any:
        torch = self.torch
        ids = torch.tensor([prompt], device=self.device)
        with torch.no_grad():
            out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids))
        return out.logits[0, -1].float().cpu().numpy()


def load_contender(spec: ContenderSpec) -> Contender:
    """The contender ``spec`` names, loaded (in the worker process)."""
    if spec.kind == "codehone":
        return CodehoneContender(spec)
    if spec.kind == "llama.cpp":
        from codehone.tools.bench_engine.llama_cpp import LlamaCppContender

        return LlamaCppContender(spec)
    if spec.kind == "hf-eager":
        return HFContender(spec)
    if spec.kind == "optimum":
        return OptimumContender(spec)
    raise ValueError(f"unknown contender kind {spec.kind!r}")
