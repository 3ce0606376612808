"""Train a byte-level BPE tokenizer for codehone's own models.

codehone's models use the StarCoder special-token convention (``<|endoftext|>`` and the
``<fim_*>`` fill-in-the-middle tokens), so the server's prompt builder treats them exactly like
a StarCoder checkpoint. Byte-level BPE never produces unknown tokens, which matters for code.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

EOS_TOKEN = "<|endoftext|>"
FIM_PREFIX_TOKEN = "<fim_prefix>"
FIM_MIDDLE_TOKEN = "<fim_middle>"
FIM_SUFFIX_TOKEN = "<fim_suffix>"
FIM_PAD_TOKEN = "<fim_pad>"
SPECIAL_TOKENS = [EOS_TOKEN, FIM_PREFIX_TOKEN, FIM_MIDDLE_TOKEN, FIM_SUFFIX_TOKEN, FIM_PAD_TOKEN]


def iter_file_texts(files: Iterable[Path], max_bytes_per_file: int = 1_000_000) -> Iterator[str]:
    """Yield the text of each readable file, skipping ones that are too big or not UTF-8."""
    for path in files:
        try:
            if path.stat().st_size > max_bytes_per_file:
                continue
            yield path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path) -> Path:
    """Train a byte-level BPE on ``texts`` and save it in Hugging Face format into ``out_dir``.

    Writes ``tokenizer.json`` plus the ``tokenizer_config.json`` / ``special_tokens_map.json``
    that ``AutoTokenizer.from_pretrained(out_dir)`` needs. Returns the tokenizer.json path.
    """
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=FIM_PAD_TOKEN,
        additional_special_tokens=[FIM_PREFIX_TOKEN, FIM_MIDDLE_TOKEN, FIM_SUFFIX_TOKEN],
        clean_up_tokenization_spaces=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return out_dir / "tokenizer.json"
