"""ONNX Runtime settings the engine's sessions share: the model's and the small KV-slicing
graph's (codehone.core.engine.kv_cache), so both run on the same provider the same way.
"""

from __future__ import annotations

import onnxruntime as ort

from codehone.core.providers import ProviderChoice

# With CUDA graphs on, only the single-token decode step is captured, under this id; every
# other call runs uncaptured (id -1).
_CUDA_GRAPH_ID = "1"


def session_options(threads: int | None = None, spinning: bool | None = None) -> ort.SessionOptions:
    """Every graph optimization; errors only in the log (node placement warnings are noise);
    ``threads`` per operator (default: ONNX Runtime's, one per core); ``spinning``: whether
    idle intra-op threads spin before they sleep (default: ONNX Runtime's, they do)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    if spinning is not None:
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if spinning else "0"
        )
    return options


def execution_providers(
    provider: ProviderChoice, cuda_graph: bool = False
) -> list[str | tuple[str, dict[str, str]]]:
    """The providers list for a session on ``provider``: CUDA on device 0 with the CPU for the
    nodes it lacks (``cuda_graph``: with graph capture enabled), or the CPU alone."""
    if not provider.is_cuda:
        return [provider.name]
    options = {"device_id": "0"}
    if cuda_graph:
        options["enable_cuda_graph"] = "1"
    return [(provider.name, options), "CPUExecutionProvider"]


def run_options(cuda_graph: bool, captured: bool = False) -> ort.RunOptions | None:
    """Run options for one call: with CUDA graphs on, whether it is the captured decode step."""
    if not cuda_graph:
        return None
    options = ort.RunOptions()
    options.add_run_config_entry("gpu_graph_id", _CUDA_GRAPH_ID if captured else "-1")
    return options
