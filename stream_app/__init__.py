"""streamrec's runtime and shared layers, and the CLI (the composition root).

Shared (``core``, ``datagen``, ``registry``): numpy and the stdlib. Runtime (``serving``,
``kafka``, ``worker``, ``replay``, ``finetune``): ONNX Runtime, Kafka and faust, never torch or
transformers. ``cli`` and ``demo`` wire the torch side (``model_export``) in, importing it only
inside the commands that train. The contracts are in pyproject.toml ([tool.importlinter]).
"""
