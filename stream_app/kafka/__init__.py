"""Kafka I/O: topics, producing and consuming (``io``), and a local single-node broker from
Maven Central jars (``local``)."""
