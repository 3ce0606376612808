"""Measuring a model as users get it: the metrics, ``codehone eval``, a PyTorch stand-in for the
engine, and the sandbox that runs generated code."""
