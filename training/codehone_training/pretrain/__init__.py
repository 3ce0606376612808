"""Pretrain codehone's small embedded default model from scratch, on local sources only:
``codehone pretrain``.

codehone has to complete code on a fresh machine with no network, so it cannot download a
model: it builds one. This package is that build, written to read top to bottom like nanoGPT:

1. collect the corpus (by default the Python standard library on this machine; optionally the
   sources of installed third-party packages too, never the held-out ones),
2. hold out a few files for validation and train a byte-level BPE tokenizer on the rest,
3. tokenize the corpus into one stream with ``<|endoftext|>`` between files,
4. build a randomly initialised GPT-2 style ``GPT2LMHeadModel``,
5. train it for a wall-clock budget with AdamW and a warm-up + cosine schedule, turning a
   fraction of the samples into fill-in-the-middle samples (PSM, laid out by
   ``codehone.core.fim`` as the server prompts; split at the character level within a file
   chunk) so the model can complete between code,
6. measure the validation loss, save a safetensors checkpoint with the tokenizer, and
7. make the model directory (``codehone_training.export.finish``): export it to ONNX and, if
   asked, rebuild it as the fused decode graph, quantize its weights to int8 and put an fp16
   copy of the checkpoint in ``checkpoint/`` so that fine-tuning can start from the directory.

``config`` holds every option, ``data`` steps 1-3 and the FIM samples, ``model`` step 4 with
the loss, optimizer and schedule, ``train`` steps 5-7. The defaults are sized so that a 2-core
CPU builds the first-run fallback model in about five minutes in all; the shipped
``models/default`` is a longer run with options (its model card gives the command). Progress
goes to the ``codehone.pretrain`` logger (stderr), never to stdout, where the LSP server speaks.
"""

from codehone_training.pretrain.config import PretrainConfig
from codehone_training.pretrain.train import format_summary, pretrain, train_checkpoint

__all__ = ["PretrainConfig", "format_summary", "pretrain", "train_checkpoint"]
