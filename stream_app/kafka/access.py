"""Can we reach Kafka with these settings? One clear error naming the setting, before a client
starts.

aiokafka reports a wrong password, an untrusted certificate or a protocol mismatch only as
"Unable to bootstrap" (the cause goes to its log), and faust retries that forever.
``check_access`` opens one connection per bootstrap server the way every client of ours does
(``KafkaSettings.client_kwargs``), asks for metadata, and turns the first failure into a
``KafkaAccessError`` that names the ``STREAMREC_KAFKA__*`` setting to fix. Its messages never
contain the password (they are also scrubbed of it, in case a broker echoes one).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from schemas.settings import KafkaSettings

ENV = "STREAMREC_KAFKA__"
HOSTNAME_MISMATCH = 62  # X509_V_ERR_HOSTNAME_MISMATCH


class KafkaAccessError(RuntimeError):
    """The broker cannot be used with the configured settings; the message says which one."""


def _hosts(broker: str) -> list[tuple[str, int]]:
    out = []
    for part in broker.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            msg = f"{ENV}BROKER: expected HOST:PORT[,HOST:PORT], got {broker!r}"
            raise KafkaAccessError(msg)
        out.append((host.strip("[]"), int(port)))
    return out


def _kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    kwargs = kafka.client_kwargs()  # a missing or unreadable CA file fails the settings already
    kwargs.pop("bootstrap_servers")
    return kwargs


def _explain(exc: BaseException, kafka: KafkaSettings, addr: str, timeout: float) -> str:
    where = f"the broker at {addr}"
    proto = f"{ENV}SECURITY_PROTOCOL={kafka.security_protocol}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == HOSTNAME_MISMATCH:
            return (
                f"the TLS certificate of {where} is not valid for that host name "
                f"({exc.verify_message}); use a name from the certificate in {ENV}BROKER"
            )
        cafile = kafka.ssl_cafile or "not set, so the system's CAs"
        return (
            f"the TLS certificate of {where} is not trusted ({exc.verify_message}): "
            f"{ENV}SSL_CAFILE ({cafile}) must hold the CA that signed it"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {where} failed ({exc.reason or exc}); is that listener TLS? {proto}"
    if isinstance(exc, SaslAuthenticationFailed):
        return (
            f"{where} rejected the SASL {kafka.sasl_mechanism} login of user "
            f"{kafka.sasl_username!r}: check {ENV}SASL_USERNAME and {ENV}SASL_PASSWORD"
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        return (
            f"{where} does not offer the SASL mechanism {kafka.sasl_mechanism} "
            f"({ENV}SASL_MECHANISM)"
        )
    if isinstance(exc, TimeoutError):
        return (
            f"no Kafka answer from {where} within {timeout:.0f} s speaking {proto}; "
            "the listener may expect another security protocol"
        )
    if isinstance(exc, KafkaConnectionError):
        return f"{where} closed the connection during the handshake: check {proto}"
    if isinstance(exc, OSError):
        reason = exc.strerror or type(exc).__name__
        return (
            f"no Kafka broker answers at {addr} ({reason}); set kafka.broker (--broker or "
            f"{ENV}BROKER) or start a local one with `streamrec kafka start`"
        )
    return f"cannot use Kafka at {where}: {type(exc).__name__}: {exc}"


async def _probe(host: str, port: int, kwargs: dict[str, Any], timeout: float) -> None:
    conn = await asyncio.wait_for(
        create_conn(host, port, request_timeout_ms=int(timeout * 1000), **kwargs), timeout
    )
    try:
        await asyncio.wait_for(conn.send(MetadataRequest([])), timeout)
    finally:
        conn.close()


async def check_access(kafka: KafkaSettings, timeout: float = 10.0) -> None:
    """Return when at least one bootstrap server accepts our connection, TLS and login; raise
    ``KafkaAccessError`` (the first server's failure) otherwise."""
    kwargs = _kwargs(kafka)
    failures: list[str] = []
    for host, port in _hosts(kafka.broker):
        try:
            await _probe(host, port, kwargs, timeout)
            return
        except (OSError, TimeoutError, KafkaError) as exc:
            failures.append(_explain(exc, kafka, f"{host}:{port}", timeout))
    raise KafkaAccessError(scrub(failures[0], kafka))


def scrub(text: str, kafka: KafkaSettings) -> str:
    """``text`` with the SASL password (if any) replaced by ``***``."""
    secret = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
    return text.replace(secret, "***") if secret else text
