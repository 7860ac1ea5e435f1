"""TLS and SASL/SCRAM for the local broker (``streamrec kafka start --secure``).

Everything comes from tools already on the machine: a CA and a broker certificate (SAN
``localhost``, ``127.0.0.1``) are made with the JDK's ``keytool``; the SCRAM-SHA-512 users are
written into the cluster metadata by Kafka's own ``kafka-storage format --add-scram`` (we pass
salted PBKDF2 credentials, so no plain password appears on a command line; keystore passwords
reach keytool through its environment, ``-storepass:env``).

The material lives in ``DATA_DIR/secure/`` (mode 0700): ``ca.pem`` (the CA clients trust),
the broker's PKCS12 keystore, ``secrets.json`` (0600) and ``client.env`` (0600): the
``STREAMREC_KAFKA__*`` settings a client needs, to ``source`` or pass as an env file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192
BROKER_USER = "broker"  # the inter-broker identity (a single node still authenticates to itself)
DEFAULT_USER = "streamrec"
SUBDIR = "secure"
CA_PEM = "ca.pem"
CLIENT_ENV = "client.env"
_KEYSTORE = "broker.p12"
_SECRETS = "secrets.json"
_PW_ENV = "STREAMREC_KEYTOOL_PASS"
_CA_PW_ENV = "STREAMREC_KEYTOOL_CA_PASS"


class SecureSetupError(RuntimeError):
    """keytool missing or failing: the TLS material could not be made."""


@dataclass(frozen=True)
class Secrets:
    username: str
    password: str
    broker_password: str
    keystore_password: str


@dataclass(frozen=True)
class SecureMaterial:
    dir: Path
    secrets: Secrets

    @property
    def ca_pem(self) -> Path:
        return self.dir / CA_PEM

    @property
    def keystore(self) -> Path:
        return self.dir / _KEYSTORE

    @property
    def client_env(self) -> Path:
        return self.dir / CLIENT_ENV

    def client_settings(self, port: int) -> dict[str, str]:
        """The client side as ``STREAMREC_KAFKA__*`` environment variables."""
        return {
            "STREAMREC_KAFKA__BROKER": f"localhost:{port}",
            "STREAMREC_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "STREAMREC_KAFKA__SASL_MECHANISM": MECHANISM,
            "STREAMREC_KAFKA__SASL_USERNAME": self.secrets.username,
            "STREAMREC_KAFKA__SASL_PASSWORD": self.secrets.password,
            "STREAMREC_KAFKA__SSL_CAFILE": str(self.ca_pem),
        }

    def scram_credentials(self) -> list[str]:
        """``--add-scram`` arguments for ``kafka-storage format``: the broker and the client."""
        s = self.secrets
        return [
            scram_credential(BROKER_USER, s.broker_password),
            scram_credential(s.username, s.password),
        ]

    def server_properties(self) -> str:
        """The broker's security lines (listener names as in ``local.SERVER_PROPERTIES``)."""
        s = self.secrets
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{BROKER_USER}" password="{s.broker_password}";'
        )
        store = self.keystore
        return "\n".join(
            [
                f"sasl.enabled.mechanisms={MECHANISM}",
                f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
                f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config={jaas}",
                "ssl.keystore.type=PKCS12",
                f"ssl.keystore.location={store}",
                f"ssl.keystore.password={s.keystore_password}",
                f"ssl.key.password={s.keystore_password}",
                "ssl.truststore.type=PKCS12",
                f"ssl.truststore.location={store}",
                f"ssl.truststore.password={s.keystore_password}",
                "ssl.client.auth=none",
                "",
            ]
        )


def scram_credential(name: str, password: str, salt: bytes | None = None) -> str:
    """A SCRAM-SHA-512 credential as ``kafka-storage --add-scram`` takes it, salted: the
    stored key material (PBKDF2-HMAC-SHA512, RFC 5802 ``Hi()``), not the password."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, SCRAM_ITERATIONS)
    b64 = base64.b64encode
    return (
        f"{MECHANISM}=[name={name},iterations={SCRAM_ITERATIONS},"
        f'salt="{b64(salt).decode()}",saltedpassword="{b64(salted).decode()}"]'
    )


def _keytool(*args: str, env: dict[str, str]) -> None:
    tool = shutil.which("keytool")
    if tool is None:
        msg = "keytool not found on PATH: the TLS material is made with the JDK's keytool"
        raise SecureSetupError(msg)
    proc = subprocess.run(
        [tool, *args], env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        msg = f"keytool {args[0]} failed: {(proc.stdout + proc.stderr).strip()[-1500:]}"
        raise SecureSetupError(msg)


def make_ca(directory: Path, name: str = "streamrec local CA") -> Path:
    """A self-signed CA (PKCS12 keystore ``ca.p12`` plus ``ca.pem``) in ``directory``; returns
    the PEM path. Also used by tests for a CA the broker does not know."""
    directory.mkdir(parents=True, exist_ok=True)
    env = {_CA_PW_ENV: secrets.token_urlsafe(18)}
    store = directory / "ca.p12"
    store.unlink(missing_ok=True)
    common = ["-keystore", str(store), "-storetype", "PKCS12", "-storepass:env", _CA_PW_ENV]
    _keytool(
        "-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048",
        "-dname", f"CN={name}", "-ext", "bc:c", "-validity", "3650", *common, env=env,
    )  # fmt: skip
    pem = directory / CA_PEM
    _keytool("-exportcert", "-alias", "ca", "-rfc", "-file", str(pem), *common, env=env)
    (directory / ".ca-pass").write_text(env[_CA_PW_ENV])
    (directory / ".ca-pass").chmod(0o600)
    return pem


def _broker_keystore(directory: Path, password: str) -> None:
    """A broker key pair signed by the CA in ``directory``, with the CA chain, in PKCS12."""
    env = {_PW_ENV: password, _CA_PW_ENV: (directory / ".ca-pass").read_text()}
    store = ["-keystore", str(directory / _KEYSTORE), "-storetype", "PKCS12"]
    store += ["-storepass:env", _PW_ENV]
    ca = ["-keystore", str(directory / "ca.p12"), "-storepass:env", _CA_PW_ENV]
    csr, crt = directory / "broker.csr", directory / "broker.crt"
    _keytool(
        "-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048",
        "-dname", "CN=localhost", "-validity", "825", *store, env=env,
    )  # fmt: skip
    _keytool("-certreq", "-alias", "broker", "-file", str(csr), *store, env=env)
    _keytool(
        "-gencert", "-alias", "ca", "-infile", str(csr), "-outfile", str(crt), "-rfc",
        "-validity", "825", "-ext", "SAN=dns:localhost,ip:127.0.0.1",
        "-ext", "KU=digitalSignature,keyEncipherment", "-ext", "EKU=serverAuth", *ca, env=env,
    )  # fmt: skip
    pem = str(directory / CA_PEM)
    _keytool("-importcert", "-alias", "ca", "-file", pem, "-noprompt", *store, env=env)
    _keytool("-importcert", "-alias", "broker", "-file", str(crt), "-noprompt", *store, env=env)
    csr.unlink()


def ensure_material(data_dir: Path, username: str | None, password: str | None) -> SecureMaterial:
    """The broker's TLS material and SCRAM secrets in ``data_dir/secure`` (made on first use,
    read back afterwards). ``username`` / ``password`` default to ``streamrec`` and a random
    password; a data dir made with other credentials keeps its own (they are in its metadata)."""
    directory = data_dir / SUBDIR
    stored = directory / _SECRETS
    if stored.exists():
        return SecureMaterial(directory, Secrets(**json.loads(stored.read_text())))
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, mode=0o700)
    found = Secrets(
        username=username or DEFAULT_USER,
        password=password or secrets.token_urlsafe(24),
        broker_password=secrets.token_urlsafe(24),
        keystore_password=secrets.token_urlsafe(18),
    )
    make_ca(directory)
    _broker_keystore(directory, found.keystore_password)
    material = SecureMaterial(directory, found)
    write_private(stored, json.dumps(asdict(found)))
    return material


def write_client_env(material: SecureMaterial, port: int) -> Path:
    lines = [f"{k}={v}" for k, v in material.client_settings(port).items()]
    write_private(material.client_env, "\n".join(lines) + "\n")
    return material.client_env


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
