"""YAML documents read with YAML 1.2 booleans: only true and false are booleans, so values such
as NO (Norway), yes, on or off keep their text in domains, value maps and constraints."""

from __future__ import annotations

import re
from typing import Any

import yaml


class Yaml12Loader(yaml.SafeLoader):
    """The safe loader with YAML 1.2's boolean words."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    """Parse one YAML document safely, with YAML 1.2 booleans."""
    return yaml.load(text, Loader=Yaml12Loader)
