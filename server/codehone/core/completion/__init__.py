"""Completion as small pure steps in a row, one module per step (import from the module that
defines a name; this package re-exports nothing):

- ``options``: the request's knobs (CompletionOptions, SamplingOptions);
- ``cursor``: the text around the cursor (CursorContext, Neighbor), whether to complete there
  (``skip_reason``) and one line or a block (``choose_mode``);
- ``prompt``: the prompt within a token budget (``build_prompt``): fill-in-the-middle, other
  open files, an anchored start for the engine's prefix reuse, token healing;
- ``postprocess``: where a completion ends, repetition loops, control characters, and the
  Completion it makes (text, and the closing characters after the cursor it replaces);
- ``closers``: how a completion meets the closing brackets and quotes after the cursor;
- ``sampling``: the sampler of the alternatives;
- ``completer``: the Completer that runs them on a decode engine, shared by the LSP server,
  ``codehone complete``, ``codehone check`` and the evaluator.
"""
