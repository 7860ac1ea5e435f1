"""The streaming worker: faust agent, catalogue feed, model hot-swap, metrics (see ``app.py``)."""
