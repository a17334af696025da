"""The small BPE tokenizer for the CPU default, and loading real LLaMA-layout tokenizers."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from videopanda.data.errors import DataError
from videopanda.data.tokenizer import load_tokenizer, train_tokenizer


def test_trained_tokenizer_is_llama_like_and_loads_with_autotokenizer(tmp_path):
    texts = ["the red circle moves left", "USER: What color? ASSISTANT: blue</s>"] * 20
    train_tokenizer(texts, tmp_path, vocab_size=400)
    tok = AutoTokenizer.from_pretrained(tmp_path)  # no videopanda code involved in loading
    assert [tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id] == [0, 1, 2, 3]
    assert len(tok) <= 400
    ids = tok("the red circle moves left")["input_ids"]
    assert ids[0] == 1 and tok.decode(ids, skip_special_tokens=True) == "the red circle moves left"
    assert tok("blue</s>", add_special_tokens=False)["input_ids"][-1] == 2  # "</s>" in text is the eos token
    assert len(tok("the red circle", add_special_tokens=False)["input_ids"]) <= 3  # merges were learned


def test_llama_tokenizer_gets_unk_as_pad_like_the_reference(llama_tokenizer):
    assert len(llama_tokenizer) == 32000 and llama_tokenizer.is_fast
    assert llama_tokenizer.pad_token_id == llama_tokenizer.unk_token_id == 0
    assert (llama_tokenizer.bos_token_id, llama_tokenizer.eos_token_id) == (1, 2)


def test_missing_tokenizer_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="tokenizer folder not found"):
        load_tokenizer(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot load a tokenizer"):
        load_tokenizer(tmp_path / "empty")
