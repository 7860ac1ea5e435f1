"""The pure core: numpy-only logic shared by the worker, replay and training (interest state,
catalogue store, retrieval, diversification, the engine, co-visitation, metrics, splits,
baselines). It imports ``schemas`` and numpy, never ONNX Runtime, Kafka or torch: the engine
reaches a model only through the ``Scorer`` protocol (``scorer.py``)."""
