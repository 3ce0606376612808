"""The decode engine, one module per part of the algorithm (import from the module that defines
a name; this package re-exports nothing):

- ``protocol``: what callers see: StopConditions, StopReason, Generation, and the one
  DecodeEngine protocol the ONNX engine and the evaluator's PyTorch engine both satisfy;
- ``loop``: the decode loop both engines run (``decode``): prefill, then a token a step, every
  stop condition checked after every token;
- ``session``: ``Engine``, the ONNX Runtime session, its model calls through IO binding and
  its KV cache reused across requests;
- ``kv_cache``: the cache itself and cutting it back to a prefix on the device;
- ``fused_step``: the fused graph's decode step, bound once (what a CUDA graph captures);
- ``speculation``: prompt-lookup speculation, a greedy step that checks a draft in one call;
- ``runtime``: the ONNX Runtime options all of the engine's sessions share.
"""
