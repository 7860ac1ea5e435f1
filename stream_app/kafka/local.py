"""A real single-node Apache Kafka (KRaft, broker+controller) without Docker.

Jars come from Maven Central (``org.apache.kafka:kafka_2.13`` and its dependencies, copied
by ``mvn dependency:copy-dependencies`` into a cache dir, never into the repo). The broker
runs with ``java -cp``; its pid is recorded in the data dir and ``stop`` ends only that pid.

``secure=True``: the client port is a SASL_SSL listener (SCRAM-SHA-512, TLS with a local CA;
``secure.py``) and nothing else answers there; the controller listener (port + 1) stays
PLAINTEXT on localhost. A data dir keeps the mode it was formatted with.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream_app.kafka import secure
from stream_app.kafka.secure import SecureMaterial

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>streamrec</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>2.24.3</version>
    </dependency>
  </dependencies>
</project>
"""

LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.org.name = org.apache.kafka
logger.org.level = {level}
"""

SERVER_PROPERTIES = """process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=localhost:{controller_port}
listeners={listener}://localhost:{port},CONTROLLER://localhost:{controller_port}
advertised.listeners={listener}://localhost:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name={listener}
listener.security.protocol.map=CONTROLLER:PLAINTEXT,{listener}:{listener}
log.dirs={log_dirs}
num.partitions={partitions}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes=10485760
log.retention.hours=168
log.segment.bytes=104857600
"""


class KafkaSetupError(RuntimeError):
    """Java/Maven missing, jars not obtainable, or the broker did not come up."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    port: int
    data_dir: Path
    reachable: bool
    secure: SecureMaterial | None = None

    @property
    def protocol(self) -> str:
        return "SASL_SSL" if self.secure else "PLAINTEXT"

    def describe(self) -> str:
        state = "running" if self.running else "stopped"
        reach = "accepting connections" if self.reachable else "not reachable"
        pid = f"pid {self.pid}" if self.pid else "no pid"
        text = (
            f"kafka {state} ({pid}) on localhost:{self.port} ({self.protocol}), {reach}; "
            f"data {self.data_dir}"
        )
        if self.secure:
            text += (
                f"\nSASL_SSL: {secure.MECHANISM} user {self.secure.secrets.username!r}, CA "
                f"{self.secure.ca_pem}; client settings (password included) in "
                f"{self.secure.client_env}: `set -a; . {self.secure.client_env}; set +a`"
            )
        return text


def _require(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        msg = f"{tool} not found on PATH: {why}"
        raise KafkaSetupError(msg)
    return path


def ensure_jars(version: str, cache_dir: Path) -> Path:
    """Directory holding Kafka's runtime jars, fetched from Maven Central on first use."""
    libs = cache_dir / f"kafka-{version}" / "libs"
    marker = libs.parent / ".complete"
    if marker.exists():
        return libs
    _require("java", "the Kafka broker runs on Java 17+ (install a JDK)")
    mvn = _require("mvn", "Kafka jars are fetched from Maven Central with Maven (install maven)")
    libs.parent.mkdir(parents=True, exist_ok=True)
    (libs.parent / "pom.xml").write_text(POM.format(version=version))
    tmp = libs.parent / "libs.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(libs.parent / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
        "-DincludeScope=runtime",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
        tail = (proc.stdout + proc.stderr)[-2000:]
        msg = f"could not fetch org.apache.kafka:kafka_2.13:{version} from Maven Central:\n{tail}"
        raise KafkaSetupError(msg)
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    marker.touch()
    return libs


def free_port(pair: bool = False) -> int:
    """A port nobody listens on now (``pair``: port + 1 free too, for a broker's controller).
    The one helper for every port we pick: brokers, worker web ports, tests."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("localhost", 0))
            port = int(s.getsockname()[1])
        if not pair:
            return port
        if port >= 65534:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("localhost", port + 1))
            except OSError:
                continue
        return port
    msg = "no free local port found in 50 tries"
    raise RuntimeError(msg)


def port_open(port: int, host: str = "localhost", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_file(data_dir: Path) -> Path:
    return data_dir / "broker.pid"


def _our_pid(data_dir: Path) -> int | None:
    """The recorded pid if that process is still our broker (same data dir on its cmdline)."""
    try:
        pid = int(_pid_file(data_dir).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return None
    if "kafka.Kafka" in cmdline and str(data_dir.resolve()) in cmdline:
        return pid
    return None


def _material(data_dir: Path) -> SecureMaterial | None:
    """The secure material of a data dir formatted with ``secure=True`` (None otherwise)."""
    if not (data_dir / secure.SUBDIR / "secrets.json").exists():
        return None
    return secure.ensure_material(data_dir, None, None)


def status(port: int, data_dir: Path) -> BrokerStatus:
    pid = _our_pid(data_dir)
    return BrokerStatus(pid is not None, pid, port, data_dir, port_open(port), _material(data_dir))


def _java_cmd(libs: Path, main: str, *args: str, heap: str = "512m") -> list[str]:
    java = _require("java", "the Kafka broker runs on Java 17+ (install a JDK)")
    return [
        java,
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        "-cp",
        f"{libs}/*",
        main,
        *args,
    ]


def start(
    port: int,
    data_dir: Path,
    version: str,
    cache_dir: Path,
    partitions: int = 8,
    timeout: float = 90.0,
    heap: str = "512m",
    secure_listener: bool = False,
    username: str | None = None,
    password: str | None = None,
) -> BrokerStatus:
    """Format (first time) and start the broker; return once it accepts connections.

    ``secure_listener``: SASL_SSL on ``port`` with the SCRAM user ``username`` / ``password``
    (defaults: ``streamrec`` and a random password, kept in the data dir)."""
    data_dir = data_dir.resolve()
    current = status(port, data_dir)
    if current.running:
        return current
    if port_open(port) or port_open(port + 1):
        msg = (
            f"port {port} or {port + 1} is already in use by another process; "
            "choose --port or stop it"
        )
        raise KafkaSetupError(msg)
    libs = ensure_jars(version, cache_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = data_dir / "logs"
    formatted = (logs / "meta.properties").exists()
    if formatted and secure_listener != (current.secure is not None):
        mode = "with" if current.secure else "without"
        msg = f"{data_dir} was formatted {mode} --secure; use another --data-dir"
        raise KafkaSetupError(msg)
    material = None
    if secure_listener:
        try:
            material = secure.ensure_material(data_dir, username, password)
        except secure.SecureSetupError as exc:
            raise KafkaSetupError(str(exc)) from None
    props = data_dir / "server.properties"
    text = SERVER_PROPERTIES.format(
        port=port,
        controller_port=port + 1,
        log_dirs=logs,
        partitions=partitions,
        listener="SASL_SSL" if material else "PLAINTEXT",
    )
    secure.write_private(props, text + (material.server_properties() if material else ""))
    log4j = data_dir / "log4j2.properties"
    log4j.write_text(LOG4J2.format(log=data_dir / "broker.log", level="WARN"))
    if not formatted:
        _format(libs, props, material.scram_credentials() if material else [])
    if material is not None:
        secure.write_client_env(material, port)
    cmd = _java_cmd(libs, "kafka.Kafka", str(props), heap=heap)
    cmd.insert(1, f"-Dlog4j2.configurationFile={log4j}")
    cmd.insert(1, f"-Dstreamrec.data={data_dir}")
    with open(data_dir / "stdout.log", "ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=data_dir
        )
    _pid_file(data_dir).write_text(str(proc.pid))
    client = _client_kwargs(port, material)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (data_dir / "stdout.log").read_text(errors="replace")[-2000:]
            msg = f"kafka exited with code {proc.returncode} during start:\n{tail}"
            raise KafkaSetupError(msg)
        if port_open(port) and _metadata_ok(client):
            return status(port, data_dir)
        time.sleep(0.5)
    stop(data_dir)
    msg = f"kafka did not accept connections on port {port} within {timeout:.0f} s"
    raise KafkaSetupError(msg)


def _format(libs: Path, props: Path, scram: list[str]) -> None:
    """``kafka-storage random-uuid`` + ``format --standalone`` (with SCRAM users, if any)."""
    uuid = (
        subprocess.run(
            _java_cmd(libs, "kafka.tools.StorageTool", "random-uuid", heap="128m"),
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    users = [arg for cred in scram for arg in ("--add-scram", cred)]
    args = ("format", "-t", uuid, "-c", str(props), "--standalone", *users)
    fmt = subprocess.run(
        _java_cmd(libs, "kafka.tools.StorageTool", *args, heap="128m"),
        capture_output=True,
        text=True,
        check=False,
    )
    if fmt.returncode != 0:
        msg = f"kafka storage format failed:\n{(fmt.stdout + fmt.stderr)[-2000:]}"
        raise KafkaSetupError(msg)


def _client_kwargs(port: int, material: SecureMaterial | None) -> dict[str, Any]:
    """aiokafka connection arguments for our own probes of the broker."""
    if material is None:
        return {"bootstrap_servers": f"localhost:{port}"}
    from aiokafka.helpers import create_ssl_context

    return {
        "bootstrap_servers": f"localhost:{port}",
        "security_protocol": "SASL_SSL",
        "ssl_context": create_ssl_context(cafile=str(material.ca_pem)),
        "sasl_mechanism": secure.MECHANISM,
        "sasl_plain_username": material.secrets.username,
        "sasl_plain_password": material.secrets.password,
    }


def _metadata_ok(client: dict[str, Any]) -> bool:
    """True once the broker answers a metadata request (KRaft elected, listener ready)."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(**client, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
            return True
        except Exception:  # noqa: BLE001 - any failure means "not ready yet"
            return False
        finally:
            await admin.close()

    return asyncio.run(probe())


def stop(data_dir: Path, timeout: float = 30.0) -> bool:
    """Stop the broker we started in data_dir (only that pid). True if one was stopped."""
    data_dir = data_dir.resolve()
    pid = _our_pid(data_dir)
    if pid is None:
        _pid_file(data_dir).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.1)
    _pid_file(data_dir).unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    if state == "Z":  # zombie: our own child not yet reaped
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True
