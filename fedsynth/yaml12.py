"""YAML documents read with YAML 1.2 booleans and floats: only true and false are booleans, so
values such as NO (Norway), yes, on or off keep their text in domains, value maps and
constraints; 1e-5 or 5e-1 are numbers, as YAML 1.2 reads them (1.1 wants 1.0e-5); and codes
with a leading zero (0123) or a colon (10:30) keep their text instead of YAML 1.1's octal and
base-60 integers."""

from __future__ import annotations

import re
from typing import Any

import yaml


class Yaml12Loader(yaml.SafeLoader):
    """The safe loader with YAML 1.2's boolean words and exponent floats."""


_REPLACED = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int"}
Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
# Decimal and hex integers only: YAML 1.1 read 0123 as octal 83 and 10:30 as 630 (base 60);
# such codes and times now keep their text.
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def load_yaml(text: str) -> Any:
    """Parse one YAML document safely, with YAML 1.2 booleans and floats."""
    return yaml.load(text, Loader=Yaml12Loader)


class Yaml12Dumper(yaml.SafeDumper):
    """The safe dumper, quoting every string that `Yaml12Loader` or a YAML 1.1 reader (PyYAML's
    safe_load, most tools) would not read back as text: 0e0, 00501, yes and 10:30 stay text in
    whatever reads the file next."""


Yaml12Dumper.yaml_implicit_resolvers = {
    first: list(
        dict.fromkeys(
            [
                *yaml.SafeLoader.yaml_implicit_resolvers.get(first, []),
                *Yaml12Loader.yaml_implicit_resolvers.get(first, []),
            ]
        )
    )
    for first in {*yaml.SafeLoader.yaml_implicit_resolvers, *Yaml12Loader.yaml_implicit_resolvers}
}

_LINE_BREAKS = ("\x85", "\u2028", "\u2029")


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    """Text holding a character YAML counts as a line break goes double-quoted, where it is
    escaped: in the single-quoted style PyYAML picks otherwise, a reader folds it to a space."""
    style = '"' if any(ch in value for ch in _LINE_BREAKS) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


Yaml12Dumper.add_representer(str, _represent_text)
