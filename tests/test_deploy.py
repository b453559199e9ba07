"""Deployment files parse, and every command, flag and config key they use exists in the code."""

from __future__ import annotations

import importlib
import re
import shlex
import tomllib
import typing
from pathlib import Path

import pytest
import typer
import yaml

from broker.config import BrokerConfig
from demo.run import CONSTRAINTS
from fedsynth.console_scripts import MODULES
from fedsynth.jobs import JobSpec, Topology
from fedsynth.security.ca import FederationCA
from fedsynth.security.principals import Role
from fedsynth.simulation.demo_data import SOURCES
from supplier_agent.config import AgentConfig, FileSource, SqlSource

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def cli(script: str) -> typer.core.TyperCommand | typer.core.TyperGroup:
    module = importlib.import_module(MODULES[SCRIPTS[script].split(":")[1]])
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
    for line in (DEPLOY / "compose.yaml").read_text().splitlines():
        # the set-up commands in compose.yaml's header comment
        stripped = line.lstrip("# ").rstrip("\\").strip()
        if line.startswith("#") and re.match(r"^(fedsynth|fedsynth-[a-z]+) ", stripped):
            found.append(shlex.split(stripped, comments=True))
    for doc in (DEPLOY / "PKI.md", ROOT / "README.md"):
        for line in doc.read_text().splitlines():
            stripped = line.strip().rstrip("\\").strip()
            if re.match(
                r"^(fedsynth|fedsynth-broker|fedsynth-supplier|fedsynth-consumer) ", stripped
            ):
                found.append(shlex.split(stripped, comments=True))
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


# --- the deployment's pieces fit together: what one file names, another provides ---------------

PKI_MOUNT_ROOT = "/etc/fedsynth/"
"""Certificates are mounted at /etc/fedsynth/pki/..., laid out as `fedsynth pki` writes pki/."""


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def mounts(service: str) -> list[tuple[str, str]]:
    """(host source, container target) of a compose service's volumes."""
    found = []
    for volume in compose()["services"][service].get("volumes", []):
        source, target = volume.split(":")[:2]
        found.append((source, target))
    return found


def service_config(service: str) -> tuple[dict, Path]:
    """The parsed config file a compose service runs with, and its path in deploy/."""
    target = compose()["services"][service]["command"][-1]
    source = dict((t, s) for s, t in mounts(service))[target]
    path = (DEPLOY / source).resolve()
    return yaml.safe_load(path.read_text()), path


def agent_services() -> list[str]:
    return [
        n for n, s in compose()["services"].items() if "fedsynth-supplier" in s.get("command", [])
    ]


def pki_layout(role: Role, name: str) -> set[str]:
    """Host paths (relative to deploy/) of one party's files in a `fedsynth pki` folder."""
    ca = FederationCA.__new__(FederationCA)  # paths only: no CA on disk is needed
    ca.directory = Path("pki")
    return {"pki/ca.pem", "pki/crl.pem", *(str(p) for p in ca.paths_for(role, name))}


def party_of(service: str) -> tuple[Role, str]:
    entry = compose()["services"][service]
    if "fedsynth-consumer" in entry.get("entrypoint", []):
        argv = entry["entrypoint"]
        return Role.CONSUMER, Path(argv[argv.index("--cert") + 1]).stem
    config, _ = service_config(service)
    role = Role.BROKER if "fedsynth-broker" in entry["command"] else Role.SUPPLIER
    return role, config["name"]


def host_file(service: str, container_path: str) -> str | None:
    """The host path (relative to deploy/) a container path of `service` reads, None if unmounted;
    a named volume's path gives 'volume:NAME/...'."""
    for source, target in sorted(mounts(service), key=lambda m: -len(m[1])):
        if container_path == target or container_path.startswith(target + "/"):
            rest = container_path[len(target) :].lstrip("/")
            if not source.startswith("."):
                return f"volume:{source}/{rest}"
            return str(Path(source.removeprefix("./")) / rest) if rest else source[2:]
    return None


@pytest.mark.parametrize(
    "service", ["broker", "agent-a", "agent-b", "agent-c", "consumer"], ids=str
)
def test_compose_mounts_each_party_its_own_pki_files_as_pki_lays_them_out(service: str) -> None:
    role, name = party_of(service)
    allowed = pki_layout(role, name)
    own_folder = str(Path(sorted(allowed - {"pki/ca.pem", "pki/crl.pem"})[0]).parent)
    for source, target in mounts(service):
        if not source.startswith("./pki"):
            continue
        host = source.removeprefix("./")
        # a party's own folder may be mounted whole only when it holds that party alone
        whole_folder = host == own_folder and role is Role.BROKER
        assert host in allowed or whole_folder, (
            f"{service} mounts {source}: not one of its own files in the `fedsynth pki` layout "
            f"({sorted(allowed)})"
        )
        assert target == PKI_MOUNT_ROOT + host, (
            f"{service}: mount {source} at {PKI_MOUNT_ROOT}{host}"
        )


@pytest.mark.parametrize("service", ["broker", "agent-a", "agent-b", "agent-c"], ids=str)
def test_every_path_a_compose_config_names_is_mounted_from_what_the_set_up_writes(
    service: str,
) -> None:
    config, _ = service_config(service)
    role, name = party_of(service)
    paths = [config["state_dir"], *config["tls"].values()]
    paths += [config[k] for k in ("key_file", "linkage_secret") if k in config]
    paths += [s["path"] for s in config.get("sources", {}).values() if s.get("kind") == "file"]
    written = pki_layout(role, name) | {"linkage.secret"} | {f"data/{s}.csv" for s in SOURCES}
    for path in paths:
        host = host_file(service, path)
        assert host is not None, f"{service}: {path} is not under any of its mounts"
        if host.startswith("volume:"):
            continue
        assert host in written or any(h.startswith(host + "/") for h in written), (
            f"{service}: {path} is mounted from {host}, which the set-up in compose.yaml's header "
            "does not write"
        )


def job() -> JobSpec:
    return JobSpec.load(DEPLOY / "config" / "job.yaml")


def test_compose_agents_serve_every_source_the_shipped_job_names() -> None:
    agents = {service_config(s)[0]["name"]: service_config(s)[0] for s in agent_services()}
    spec = job()
    for part in spec.suppliers:
        assert part.supplier in agents, f"job.yaml names {part.supplier}; no compose agent is it"
        sources = agents[part.supplier]["sources"]
        assert part.source in sources, (
            f"job.yaml reads {part.source!r} at {part.supplier}; its config has {sorted(sources)}"
        )
        prep = spec.prep[part.supplier]
        assert prep.source in sources, f"job.yaml prep of {part.supplier} reads {prep.source!r}"
    broker, _ = service_config("broker")
    assert {p.supplier for p in spec.suppliers} <= set(broker["suppliers"])


def test_compose_agents_have_the_linkage_secret_the_job_needs() -> None:
    spec = job()
    linking = {s for s, prep in spec.prep.items() if prep.linkage is not None}
    assert linking, "job.yaml links records: this test keeps the agents able to"
    for service in agent_services():
        config, _ = service_config(service)
        if config["name"] in linking:
            assert config.get("linkage_secret"), f"{service}: job.yaml links; no linkage_secret"


def test_the_broker_certificate_carries_the_name_compose_agents_dial() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    issue = [
        shlex.split(line.lstrip("# "))
        for line in text.splitlines()
        if re.match(r"^#\s+fedsynth pki issue .*--role broker", line)
    ]
    assert issue, "compose.yaml's header issues no broker certificate"
    names = {argv[i + 1] for argv in issue for i, w in enumerate(argv) if w in ("--dns", "--ip")}
    for service in agent_services():
        host = service_config(service)[0]["broker"].rsplit(":", 1)[0]
        assert host in names, f"{service} dials {host}; the broker certificate serves {names}"
    consumer = compose()["services"]["consumer"]["entrypoint"]
    assert consumer[consumer.index("--broker") + 1].rsplit(":", 1)[0] in names
    assert "--dns broker" in (ROOT / "README.md").read_text().replace("\n", " ")


def model_fields(model: type, prefix: str = "") -> set[str]:
    """Dotted names of every field of a pydantic model, nested models expanded."""
    names: set[str] = set()
    for field_name, info in model.model_fields.items():
        names.add(prefix + field_name)
        inner = [a for a in typing.get_args(info.annotation) or (info.annotation,) if a is not None]
        for candidate in inner:
            if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
                names |= model_fields(candidate, f"{prefix}{field_name}.")
    return names


def keys_of(data: object, prefix: str = "") -> set[str]:
    if not isinstance(data, dict):
        return set()
    found = set()
    for key, value in data.items():
        found.add(prefix + key)
        found |= keys_of(value, f"{prefix}{key}.")
    return found


def test_the_agent_template_sets_and_explains_every_config_field() -> None:
    path = DEPLOY / "config" / "agent.yaml"
    template = yaml.safe_load(path.read_text())
    present = keys_of({k: v for k, v in template.items() if k != "sources"})
    missing = model_fields(AgentConfig) - {"sources"} - present
    assert not missing, f"agent.yaml leaves out {sorted(missing)}"
    for kind in (FileSource, SqlSource):
        examples = [
            s
            for s in template["sources"].values()
            if s["kind"] == kind.model_fields["kind"].default
        ]
        assert examples, f"agent.yaml has no {kind.__name__} source"
        left_out = set(kind.model_fields) - set().union(*(s.keys() for s in examples))
        assert not left_out, f"agent.yaml's {kind.__name__} example leaves out {sorted(left_out)}"
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if re.match(r"^\s*[a-z_]+:\s*(\S.*)?$", line) and "#" not in line:
            nested = re.match(r"^\s*[a-z_]+:\s*$", line)  # a section whose keys explain it
            assert nested or re.match(r"^\s*(kind|path|url|query):", line), (
                f"agent.yaml:{number} {line.strip()!r} has no comment"
            )


def test_the_readme_walkthrough_names_every_path_the_templates_set() -> None:
    """A literal follower must change each absolute path a template sets, so the step says so."""
    readme = (ROOT / "README.md").read_text()
    steps = {
        "broker.yaml": readme.split("**2. Broker**")[1].split("**3. Agents**")[0],
        "agent.yaml": readme.split("**3. Agents**")[1].split("**4. A job**")[0],
    }
    for name, step in steps.items():
        template = yaml.safe_load((DEPLOY / "config" / name).read_text())
        flat = " ".join(step.split())
        for key in sorted(keys_of(template)):
            value = template
            for part in key.split("."):
                value = value[part]
            if isinstance(value, str) and value.startswith("/"):
                leaf = key.rsplit(".", 1)[1] if "." in key else key
                assert f"{leaf}:" in flat or f"`{key}`" in flat or f"`{leaf}`" in flat, (
                    f"README step for {name} never mentions {key} (template: {value})"
                )


def test_systemd_units_do_not_retry_configuration_errors_and_document_their_set_up() -> None:
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        text = unit.read_text()
        assert re.search(r"^RestartPreventExitStatus=.*\b2\b", text, re.M), unit.name
        exec_start = re.search(r"^ExecStart=(\S+)", text, re.M).group(1)
        venv = exec_start.split("/bin/")[0]
        user = re.search(r"^User=(\S+)", text, re.M).group(1)
        comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
        assert f"venv {venv}" in comments, f"{unit.name}: how {venv} is made"
        assert re.search(rf"useradd .*\b{user}\b", comments), f"{unit.name}: who {user} is"
        assert re.search(rf"-o {user}\b", comments), f"{unit.name}: {user} must own its key"


def test_the_image_creates_the_state_folders_the_compose_volumes_mount() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    before_user = dockerfile.split("\nUSER ")[0]
    user = re.search(r"^USER (\S+)", dockerfile, re.M).group(1)
    runs = " ".join(re.findall(r"^RUN ((?:.*\\\n)*.*)$", before_user, re.M)).replace("\\\n", " ")
    targets = {
        target
        for service in compose()["services"]
        for source, target in mounts(service)
        if not source.startswith(".")
    }
    assert targets
    for target in sorted(targets):
        assert target in runs.split(), f"the image does not create {target} before USER"
    owned = re.search(rf"install -d [^&;]*-o {user}\b", runs) or re.search(
        rf"chown [^&;]*\b{user}\b", runs
    )
    assert owned, f"the state folders are not given to {user}"


def test_compose_health_check_outlasts_the_probe_and_the_start() -> None:
    check = compose()["services"]["broker"]["healthcheck"]

    def seconds(value: str) -> float:
        return float(value.rstrip("s"))

    argv = check["test"][1:]
    probe_timeout = float(argv[argv.index("--timeout") + 1]) if "--timeout" in argv else 3.0
    # the probe is a Python program: ~4 s to start on an idle 2-core host, more when busy
    assert seconds(check["timeout"]) >= probe_timeout + 10
    assert seconds(check.get("start_period", "0s")) >= 30


def test_the_health_port_stays_on_loopback_outside_kubernetes() -> None:
    broker = BrokerConfig.model_validate(
        yaml.safe_load((DEPLOY / "config" / "broker.yaml").read_text())
    )
    assert broker.health_listen is not None
    assert broker.health_listen.rsplit(":", 1)[0] == "127.0.0.1"
    port = broker.health_listen.rsplit(":", 1)[1]
    probe = compose()["services"]["broker"]["healthcheck"]["test"]
    assert f"127.0.0.1:{port}" in probe, "the container's own probe must reach it"
    published = [str(p) for p in compose()["services"]["broker"].get("ports", [])]
    assert not any(p.split(":")[-1] == port for p in published), "the health port is published"


def test_the_kubernetes_agent_mounts_its_data_and_linkage_secret() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "agent.yaml").read_text()))
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    agent = pod["containers"][0]
    paths = {m["mountPath"] for m in agent["volumeMounts"]}
    assert "/data" in paths
    secrets = [v for v in pod["volumes"] if "secret" in v]
    assert any("linkage" in v["secret"]["secretName"] for v in secrets)


def test_the_kubernetes_agent_starts_without_the_sql_password_secret() -> None:
    """A file-only site creates no `fedsynth-agent-db` Secret; its pod must still start."""
    docs = yaml.safe_load_all((DEPLOY / "kubernetes" / "agent.yaml").read_text())
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    refs = [
        e["valueFrom"]["secretKeyRef"]
        for c in pod["containers"]
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    ]
    db = [r for r in refs if r["name"] == "fedsynth-agent-db"]
    assert db and all(r.get("optional") is True for r in db), db


def test_the_readme_data_command_makes_enough_rows_for_the_shipped_job() -> None:
    """demo/run.py's population passes the job's audit; the default population does not."""
    run_py = (ROOT / "demo" / "run.py").read_text()
    demo_rows = re.search(r'"--rows", type=int, default=(\d+)', run_py).group(1)
    for doc in (ROOT / "README.md", DEPLOY / "compose.yaml"):
        commands = re.findall(r"fedsynth\.simulation\.demo_data[^`\n]*", doc.read_text())
        assert commands, doc.name
        for command in commands:
            assert f"--rows {demo_rows}" in command, f"{doc.name}: {command}"


def test_the_readme_make_demo_line_lists_every_topology() -> None:
    line = next(
        x for x in (ROOT / "README.md").read_text().splitlines() if x.startswith("make demo")
    )
    for topology in Topology:
        assert topology.value in line, f"make demo: TOPOLOGY={topology.value} not listed"


def test_readme_benchmarks_and_limitations_agree_on_transfer() -> None:
    readme = (ROOT / "README.md").read_text()
    row = next(x for x in readme.splitlines() if x.startswith("| `transfer.py`"))
    limitation = readme.split("## Limitations")[1].split("- Transfer throughput")[1]
    limitation = " ".join(limitation.split("\n- ")[0].split())
    ranges = re.findall(r"\d+\u2013\d+%", limitation)
    assert ranges
    for found in ranges:
        assert found in row, f"Limitations say {found}; the Benchmarks row does not"
    command = re.search(r"`([^`]*benchmarks/transfer\.py[^`]*)`", row).group(1)
    assert "--repeat" in command


def test_the_shipped_job_declares_the_demo_jobs_constraints() -> None:
    """deploy/config/job.yaml mirrors the job demo/run.py submits, constraints included."""
    assert job().synthesizer.params["constraints"] == CONSTRAINTS
    assert [c.kind for c in job().constraints()] == ["derived"]
