"""Torch side: encoder, multi-task ranker, training, ONNX export, model registry.

Only ``registry`` is imported by the worker; it does not import torch."""
