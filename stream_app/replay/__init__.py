"""Replay evaluation: event logs through the worker's own core, offline or through Kafka.

Modules, by what they own:

- ``runner``: ``run_replay``, the named steps (data, leakage-checked versions, systems, run,
  metrics) behind ``streamrec replay``;
- ``stream`` / ``loo``: the two protocols;
- ``systems``: our model (and its selection variants) in replay; ``baselines``: popularity and
  co-occurrence in the stream protocol; ``ablations``: the k=1 and no-text versions;
- ``catalogue``: the item universe of a replay and the versions loaded over it;
- ``results``: per-example outcomes -> metrics (``stream_app.core.metrics``);
- ``leakage``: manifest checks; ``report``: report.md, metrics.json, plots;
- ``via_kafka``: the same evaluation through the real topics and a running worker.
"""
