"""One settings tree: every CLI option of every command sets a settings path (or is a per-run
input/output argument on the short, reasoned exemption list), the README's settings table
lists the variable of each, a flag overrides its environment variable for that run, and a
child process given ``Settings.to_env()`` reads back exactly the same settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from schemas.settings import PREFIX, Settings, env_name, setting_field, setting_paths
from stream_app.cli import cli_group
from stream_app.cli.common import command_settings
from stream_app.cli.options import EXEMPT, SettingOption, walk_options

ROOT = Path(__file__).resolve().parents[2]
ALWAYS = {"help", "version"}  # click's own


def _options() -> list[tuple[str, click.Option]]:
    return [(cmd, o) for cmd, o in walk_options(cli_group()) if o.name not in ALWAYS]


def test_every_cli_option_is_a_setting_or_a_reasoned_per_run_argument() -> None:
    options = _options()
    assert len(options) > 100  # every command was walked
    strays = [
        f"{cmd} {o.opts[0]}"
        for cmd, o in options
        if not isinstance(o, SettingOption) and o.name not in EXEMPT
    ]
    assert strays == [], f"options that are no setting (map them, or exempt them): {strays}"
    assert all(reason.strip() for reason in EXEMPT.values())
    for cmd, o in options:
        if isinstance(o, SettingOption):
            setting_field(o.setting)  # a real leaf of the tree (raises otherwise)
            assert o.setting in setting_paths(), f"{cmd} {o.opts[0]} -> {o.setting}"
            assert env_name(o.setting) in (o.help or ""), f"{cmd} {o.opts[0]}: help names its var"
    exempt_used = {o.name for _, o in options if o.name in EXEMPT}
    assert exempt_used == set(EXEMPT), f"unused exemptions: {set(EXEMPT) - exempt_used}"


def test_the_readme_table_lists_the_variable_of_every_option() -> None:
    text = (ROOT / "README.md").read_text()
    for cmd, o in _options():
        if isinstance(o, SettingOption):
            var = env_name(o.setting)
            assert f"| `{var}` |" in text, f"{cmd} {o.opts[0]}: {var} not in the README table"
            assert f"`{cmd} {o.opts[0]}`" in text, f"{cmd} {o.opts[0]} not in the README table"


def _train_settings(args: list[str], tmp_path: Path) -> Settings:
    data = tmp_path / "x.jsonl"
    data.write_text("")
    group = cli_group()
    train = group.commands["train"]
    with group.make_context("streamrec", ["train"]) as parent:
        ctx = train.make_context("train", ["--items", str(data), "--events", str(data), *args])
        ctx.parent = parent
        return command_settings(ctx)


def test_a_flag_overrides_its_environment_variable_for_that_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMREC_TRAINING__EPOCHS", "7")
    monkeypatch.setenv("STREAMREC_TRAINING__USE_TEXT", "true")
    from_env = _train_settings([], tmp_path)
    assert from_env.training.epochs == 7 and from_env.training.use_text is True
    flags = _train_settings(["--epochs", "3", "--no-text", "--dim", "16", "--k", "2"], tmp_path)
    assert flags.training.epochs == 3 and flags.training.use_text is False
    assert flags.training.d == 16 and flags.interests.k == 2
    with pytest.raises(click.ClickException, match="training.epochs"):
        _train_settings(["--epochs", "0"], tmp_path)  # the field's own validation, named


def test_to_env_gives_a_child_process_exactly_these_settings(tmp_path: Path) -> None:
    settings = Settings().with_overrides(
        **{
            "kafka.broker": "broker-a:9192",
            "serving.top_k": 7,
            "replay.ks": "5,20",
            "replay.ablation_versions": ["no-text=v0004"],
            "replay.baselines": (),
            "finetune.every": "2m",
            "finetune.shadow": 50,
            "model_path": None,
            "data_dir": str(tmp_path / "data"),
        }
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    env.update(settings.to_env())
    code = "from schemas.settings import Settings; print(Settings().model_dump_json())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT
    )
    back = Settings.model_validate(json.loads(out.stdout))
    assert back == settings
    assert back.finetune.every == 120.0 and back.replay.ks == (5, 20)
    assert back.replay.ablation_versions == {"no-text": "v0004"} and back.replay.baselines == ()
    assert set(settings.to_env()) == {env_name(p) for p in setting_paths()}
