"""Fine-tune a causal LM on a prepared project: ``codehone finetune``.

Reads top to bottom (``train.finetune``):

1. resolve the base model (a Hugging Face checkpoint, or a model directory that leads to one)
   and the data set; pack its train and validation splits for the base's tokenizer (cached);
2. load the model (safetensors only, no remote code) and choose what trains: everything
   (``full``), only the top N transformer blocks and the final norm (``freeze``), or LoRA
   adapters on every linear layer (``lora``, peft) (``model``);
3. plan the run: steps from the epochs, capped by ``max_steps`` and by a wall-clock budget
   (measured with a few probe steps); the plan is stored so that a resumed run repeats it
   (``plan``);
4. train with the Hugging Face ``Trainer``: bf16 (or fp16) autocast on CUDA, fp32 on the CPU,
   gradient accumulation, optional gradient checkpointing, cosine schedule with warm-up,
   validation every N steps, early stopping, the best checkpoint kept (safetensors), resume
   from the last checkpoint after an interruption, progress bars on stderr. The same code
   runs on one GPU, on the CPU, and on several GPUs under ``torchrun`` / ``accelerate
   launch`` (the Trainer sets up DDP from the environment);
5. save the best model (LoRA adapters merged into the weights) with its tokenizer, its
   configuration and a model card into ``RUN_DIR/model``, ready for ``codehone export``.

``config`` holds the options of a run (``FinetuneConfig``) and what a resumed run must share.
"""

from codehone_training.finetune.config import METHODS, FinetuneConfig, FinetuneResult
from codehone_training.finetune.train import finetune

__all__ = ["METHODS", "FinetuneConfig", "FinetuneResult", "finetune"]
