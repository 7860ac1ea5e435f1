"""The pure core: numpy-only logic shared by the worker, replay and training."""
