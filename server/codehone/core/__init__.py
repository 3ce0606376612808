"""The serving core: everything needed to turn a model directory and a cursor into a completion.

The model-directory contract, the tokenizer, token healing, fill-in-the-middle layouts, the
execution-provider choice, the ONNX Runtime decode engine and the completion pipeline. It
imports neither torch nor pygls, so the server runs from an install without training extras,
and every other layer (``lsp``, ``check``, ``tools``, ``codehone_training``) builds on it.
"""
