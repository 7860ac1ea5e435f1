"""The whole product against a REAL broker that requires SASL_SSL (SCRAM-SHA-512 over TLS,
``streamrec kafka start --secure``): producer, worker, ``consume`` and the fine-tuning job
with the credentials from settings; a wrong password and an unknown CA each end every
command at once with one error naming the setting; the password appears in no output."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
from worker_harness import TopicReader, copy_registry, rec_values, run_cli, worker_process

from schemas.settings import Settings
from stream_app.kafka import secure
from stream_app.kafka.io import read_lines
from stream_app.registry import Registry
from stream_app.worker.process import WorkerProcess
from tests.conftest import SecureBroker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
WRONG = "wrong-password-Zq81"


def _leaks(texts: dict[str, str], *secrets_: str) -> list[str]:
    return [name for name, text in texts.items() for s in secrets_ if s in text]


def _broker_logs(b: SecureBroker) -> dict[str, str]:
    return {
        f"broker {p.name}": p.read_text(errors="replace")
        for p in (b.data_dir / "broker.log", b.data_dir / "stdout.log")
        if p.exists() and p.stat().st_size
    }


async def test_pipeline_over_sasl_ssl_and_no_secret_in_any_output(
    secure_settings: Settings,
    secure_broker: SecureBroker,
    tiny_world: Path,
    tiny_registry: Path,
    tmp_path: Path,
):
    s = secure_settings
    reg_dir = copy_registry(tiny_registry, tmp_path / "registry")
    v1 = Registry(reg_dir).current()
    outputs: dict[str, str] = {}

    def cli(name: str, *args: str) -> subprocess.CompletedProcess[str]:
        proc = run_cli(s, reg_dir, *args)
        outputs[name] = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{name}:\n{proc.stderr[-3000:]}"
        return proc

    items = tiny_world / "items.jsonl"
    events = read_lines(tiny_world / "events.jsonl")[:400]
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(events) + b"\n")
    await asyncio.to_thread(cli, "produce items", "produce", str(items), "--topic", s.topics.items)
    worker = worker_process(s, reg_dir, tmp_path / "logs").start()
    try:
        health = await worker.wait_ready()
        async with TopicReader(s, s.topics.recommendations) as recs:
            await asyncio.to_thread(
                cli, "produce events", "produce", str(tmp_path / "events.jsonl"), "--topic",
                s.topics.events,
            )  # fmt: skip
            await recs.wait_for(lambda r: len(r) >= len(events), 90, "recommendations")
            consumed = await asyncio.to_thread(
                cli, "consume", "consume", "--topic", s.topics.recommendations,
                "--from-beginning", "--json", "--limit", str(len(events)), "--timeout", "20",
            )  # fmt: skip
            # the fine-tuning job: events from Kafka, the catalogue from the items topic, its
            # notice on model-updates (the worker swaps to the new version when it publishes)
            tuned = await asyncio.to_thread(
                cli, "finetune", "finetune", "--once", "--json", "--min-events", "100",
                "--epochs", "1", "--tolerance", "1.0", "--buffer-dir", str(tmp_path / "buf"),
            )  # fmt: skip
            (result,) = [json.loads(x) for x in tuned.stdout.splitlines() if x.startswith("{")]
            assert result["decision"] == "published", result["reason"]
            v2 = result["version"]
            assert result["counts"]["events"] >= len(events) * 0.9  # read over SASL_SSL
            await worker_serves(worker, v2)
            outputs["/health"] = json.dumps(worker.health())
            outputs["/metrics"] = worker.get("/metrics")[1].decode()
    finally:
        code = worker.stop()
    outputs["worker log"] = worker.log()
    assert code == 0, worker.log()[-3000:]
    assert health["status"] == "ok" and health["model_version"] == v1
    ids = {json.loads(e)["event_id"] for e in events}
    assert {r["trigger_event_id"] for r in rec_values(recs.records)} >= ids
    got = [json.loads(x) for x in consumed.stdout.splitlines() if x.strip()]
    assert len(got) == len(events) and {g["value"]["trigger_event_id"] for g in got} == ids
    for cmd in (["--help"], ["kafka", "start", "--help"], ["worker", "--help"], ["finetune", "-h"]):
        outputs[" ".join(cmd)] = run_cli(s, reg_dir, *cmd).stdout
    outputs.update(_broker_logs(secure_broker))
    assert not _leaks(outputs, secure_broker.password)
    assert all(outputs.values())


async def worker_serves(worker: WorkerProcess, version: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while (worker.health() or {}).get("model_version") != version:
        assert time.monotonic() < deadline, (
            f"worker never served {version}:\n{worker.log()[-2000:]}"
        )
        await asyncio.sleep(0.5)


Done = subprocess.CompletedProcess[str]
COMMANDS = {
    "produce": ["produce", "{events}", "--topic", "{topic}"],
    "consume": ["consume", "--topic", "{topic}", "--timeout", "30"],
    "worker": ["worker"],
    "finetune": ["finetune", "--once", "--min-events", "1"],
}


@pytest.mark.parametrize(
    ("fault", "setting"),
    [
        ("wrong password", "STREAMREC_KAFKA__SASL_PASSWORD"),
        ("unknown CA", "STREAMREC_KAFKA__SSL_CAFILE"),
    ],
)
async def test_a_wrong_password_or_an_unknown_ca_is_one_clear_error(
    secure_settings: Settings,
    secure_broker: SecureBroker,
    tiny_world: Path,
    tiny_registry: Path,
    tmp_path: Path,
    fault: str,
    setting: str,
):
    if fault == "wrong password":
        bad = secure_settings.with_overrides(**{"kafka.sasl_password": WRONG})
    else:
        other = secure.make_ca(tmp_path / "other-ca", "a CA the broker never heard of")
        bad = secure_settings.with_overrides(**{"kafka.ssl_cafile": str(other)})
    fill = {"events": str(tiny_world / "events.jsonl"), "topic": bad.topics.events}

    async def one(
        name: str, args: list[str]
    ) -> tuple[str, subprocess.CompletedProcess[str], float]:
        t0 = time.monotonic()
        argv = [a.format(**fill) for a in args]
        proc = await asyncio.to_thread(run_cli, bad, tiny_registry, *argv, timeout=90)
        return name, proc, time.monotonic() - t0

    results = await asyncio.gather(*(one(n, a) for n, a in COMMANDS.items()))
    for name, proc, seconds in results:
        text = proc.stdout + proc.stderr
        errors = [ln for ln in text.splitlines() if ln.startswith("Error:")]
        assert proc.returncode == 1, f"{name}: exit {proc.returncode}\n{text[-2000:]}"
        assert len(errors) == 1 and setting in errors[0], f"{name}:\n{text[-2000:]}"
        assert "Traceback" not in text, f"{name}:\n{text[-2000:]}"
        assert seconds < 60, f"{name} took {seconds:.0f} s to give up"
        assert not _leaks({name: text}, secure_broker.password, WRONG)
    assert not _leaks(_broker_logs(secure_broker), secure_broker.password, WRONG)


def test_secure_broker_refuses_plaintext_and_the_cli_says_which_setting(
    secure_settings: Settings, tiny_registry: Path
):
    plain = secure_settings.with_overrides(**{"kafka.security_protocol": "PLAINTEXT"})
    proc = run_cli(
        plain, tiny_registry, "consume", "--topic", plain.topics.events, "--timeout", "5"
    )
    assert proc.returncode == 1
    assert "STREAMREC_KAFKA__SECURITY_PROTOCOL=PLAINTEXT" in proc.stderr, proc.stderr[-2000:]
