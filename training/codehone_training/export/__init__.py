"""From a PyTorch checkpoint to a verified model directory: the optimum export, codehone's
fused decode graph, weight-only quantization and the logit verification they all pass."""
