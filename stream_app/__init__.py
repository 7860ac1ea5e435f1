"""Runtime side of streamrec: faust app, the pure core, ONNX scoring, replay and the CLI.

Nothing under this package imports torch or transformers: the worker runs on onnxruntime.
"""
