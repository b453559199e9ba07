"""Deployment files parse, and every command, flag and config key they use exists in the code."""

from __future__ import annotations

import importlib
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import typer
import yaml

from broker.config import BrokerConfig
from fedsynth.jobs import JobSpec
from supplier_agent.config import AgentConfig

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def cli(script: str) -> typer.core.TyperCommand | typer.core.TyperGroup:
    module = importlib.import_module(SCRIPTS[script].split(":")[0])
    return typer.main.get_command(module.app)


def check_command(argv: list[str]) -> None:
    """Walk argv through the click tree: each sub-command and option must exist where used."""
    script = Path(argv[0]).name
    assert script in SCRIPTS, f"{script} is not a console script"
    command = cli(script)
    words = iter(argv[1:])
    for word in words:
        if word.startswith("--"):
            name = word.split("=", 1)[0]
            option = next(
                (p for p in command.params if p.param_type_name == "option" and name in p.opts),
                None,
            )
            assert option is not None, f"{' '.join(argv)}: {command.name} has no {name}"
            if not option.is_flag and "=" not in word:
                next(words)
        elif word in getattr(command, "commands", {}):
            command = command.commands[word]
        else:
            assert not hasattr(command, "commands"), f"{' '.join(argv)}: no command {word}"


def manifest_commands() -> list[list[str]]:
    found: list[list[str]] = []
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for service in compose["services"].values():
        for key in ("command", "entrypoint"):
            if service.get(key):
                found.append(list(service[key]))
        test = service.get("healthcheck", {}).get("test")
        if test:
            found.append(test[1:])
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            spec = doc.get("spec", {}).get("template", {}).get("spec", {})
            found += [c["command"] for c in spec.get("containers", []) if "command" in c]
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                found.append(shlex.split(line.removeprefix("ExecStart=")))
    docker_cmd = re.search(r"^CMD (\[.*\])$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert docker_cmd is not None
    found.append(yaml.safe_load(docker_cmd.group(1)))
    for doc in (DEPLOY / "PKI.md", ROOT / "README.md"):
        for line in doc.read_text().splitlines():
            stripped = line.strip().rstrip("\\").strip()
            if re.match(
                r"^(fedsynth|fedsynth-broker|fedsynth-supplier|fedsynth-consumer) ", stripped
            ):
                found.append(shlex.split(stripped))
    return found


def test_every_manifest_parses() -> None:
    yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    docs = [
        d for p in (DEPLOY / "kubernetes").glob("*.yaml") for d in yaml.safe_load_all(p.read_text())
    ]
    assert {d["kind"] for d in docs} >= {"StatefulSet", "Service", "Deployment"}


@pytest.mark.parametrize("argv", manifest_commands(), ids=lambda a: " ".join(a)[:60])
def test_every_deployed_command_and_flag_exists(argv: list[str]) -> None:
    check_command(argv)


@pytest.mark.parametrize("path", sorted((DEPLOY / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_key_exists(path: Path) -> None:
    if path.name == "job.yaml":
        JobSpec.load(path)
        return
    data = yaml.safe_load(path.read_text())
    model = BrokerConfig if path.name.startswith("broker") else AgentConfig
    model.model_validate(data)


def test_a_wrong_flag_would_be_caught() -> None:
    with pytest.raises(AssertionError, match="has no --conf"):
        check_command(["fedsynth-broker", "serve", "--conf", "x"])
    with pytest.raises(AssertionError, match="no command launch"):
        check_command(["fedsynth-supplier", "launch"])
