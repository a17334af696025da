"""Tokenizers: train a small byte-level BPE for the CPU default, and load any HF tokenizer for training.

The synthetic VideoQA set ships its own tokenizer (trained here on its corpus, vocab <= 1024 to fit the tiny
model), so nothing needs the hub. Its layout is LLaMA-like: ``<unk>`` = 0, ``<s>`` = 1, ``</s>`` = 2, plus
``<pad>`` = 3; a ``<s>`` is prepended when the tokenizer is called with special tokens. It is saved with
``save_pretrained``, so ``transformers.AutoTokenizer.from_pretrained(folder)`` loads it.

Real LLaMA-layout tokenizers (a folder with ``tokenizer.model`` or ``tokenizer.json``) load with
:func:`load_tokenizer` too; like the reference it uses ``<unk>`` as the pad token when there is none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from .errors import DataError

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")  # ids 0, 1, 2, 3


def train_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 1024, min_frequency: int = 1):
    """Train a byte-level BPE tokenizer on ``texts`` and save it to ``out_dir``.

    Args:
        texts: training corpus (any iterable of strings).
        out_dir: folder to write (``tokenizer.json`` + ``tokenizer_config.json``).
        vocab_size: upper bound on the vocabulary, special tokens and the 256 byte symbols included; the trainer
            stops earlier when the corpus has no more merges.
        min_frequency: minimum count of a pair to merge.

    Returns:
        The loaded ``transformers`` tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size={vocab_size} is below the 256 byte symbols + {len(SPECIAL_TOKENS)} specials")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    for i, name in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(name) == i, f"special token {name} got id {tok.token_to_id(name)}"
    # LLaMA-like: a BOS in front when the tokenizer is called with add_special_tokens=True.
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    logger.info("trained a byte-level BPE tokenizer with %d tokens -> %s", len(fast), out_dir)
    return load_tokenizer(out_dir)


def load_tokenizer(path: str | Path):
    """Load a fast HF tokenizer from a folder and make sure it has a pad token (``<unk>`` as in the reference).

    Raises:
        DataError: the folder is missing or holds no loadable tokenizer, or the tokenizer is not a fast one.
    """
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: tokenizer folder not found")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as err:  # transformers raises OSError/ValueError/... depending on what is missing
        raise DataError(f"{path}: cannot load a tokenizer ({err})") from err
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(f"{path}: {type(tokenizer).__name__} is not a fast tokenizer (label masking needs offsets)")
    if tokenizer.pad_token is None:
        if tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token  # reference: pad = unk (id 0)
        elif tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            raise DataError(f"{path}: the tokenizer has no pad, unk or eos token to pad with")
    return tokenizer
