"""Data for streamrec: a synthetic world with known ground truth, and dataset converters."""

from stream_app.datagen.jsonl import iter_jsonl, load_events, load_items, write_jsonl
from stream_app.datagen.synthetic import TOPICS, generate_world

__all__ = [
    "TOPICS",
    "generate_world",
    "iter_jsonl",
    "load_events",
    "load_items",
    "write_jsonl",
]
