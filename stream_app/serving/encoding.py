"""Item text -> vectors with a registry version's tokenizer and encoder graph (no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

MAX_TOKENS = 128
PAD_TOKEN = "[PAD]"


def load_tokenizer(directory: Path) -> Tokenizer:
    """The version's ``tokenizer.json``, padding to the batch's longest text (the file pads
    every text to 128 tokens, which made encoding ~12x slower) and truncating at 128."""
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0, pad_token=PAD_TOKEN)
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    return tokenizer


def encode_texts(
    session: ort.InferenceSession, tokenizer: Tokenizer, texts: list[str], dim: int, batch: int
) -> np.ndarray:
    """[N, dim] sentence embeddings; texts sorted by length so a batch pads little."""
    out = np.zeros((len(texts), dim), np.float32)
    order = np.argsort([len(t) for t in texts], kind="stable")
    for s in range(0, len(texts), batch):
        idx = order[s : s + batch]
        enc = tokenizer.encode_batch([texts[i] for i in idx])
        input_ids = np.array([e.ids for e in enc], np.int64)
        mask = np.array([e.attention_mask for e in enc], np.int64)
        out[idx] = session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
    return out
