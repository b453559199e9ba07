"""broker.yaml: relative paths resolve against the file, and bad documents name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import BrokerConfig, ConfigError
from broker.tls import RevocationList, RotatingCredentials
from fedsynth.security.ca import FederationCA
from fedsynth.security.principals import Role

VALID = """
federation: health-eu
listen: 127.0.0.1:7443
state_dir: state
key_file: state/at-rest.key
tls: {ca: pki/ca.pem, cert: pki/broker/main.pem, key: pki/broker/main.key, crl: pki/crl.pem}
suppliers: [hospital-a]
"""


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    path = tmp_path / "broker.yaml"
    path.write_text(VALID)
    config = BrokerConfig.load(path)
    assert config.state_dir == tmp_path / "state"
    assert config.tls.crl == tmp_path / "pki" / "crl.pem"
    assert config.database == tmp_path / "state" / "broker.sqlite3"


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (("suppliers: [hospital-a]", "suppliers: [Hospital A]"), "suppliers"),
        (
            ("suppliers: [hospital-a]", "suppliers: [hospital-a, hospital-a]"),
            "suppliers ['hospital-a'] are listed more than once",
        ),
        (("listen: 127.0.0.1:7443", "listen: 127.0.0.1:7443\nport: 1"), "port"),
        (("federation: health-eu\n", ""), "federation"),
        (("listen: 127.0.0.1:7443", "listen: 127.0.0.1:99999"), "from 0 to 65535"),
        (("listen: 127.0.0.1:7443", "listen: 127.0.0.1:abc"), "listen"),
        (
            ("suppliers: [hospital-a]", "suppliers: [hospital-a]\nlimits: {chunk_bytes: 16777216}"),
            "chunk_bytes (16777216) plus 65536 bytes of framing must fit in max_message_bytes",
        ),
        (
            ("suppliers: [hospital-a]", "suppliers: [a, b, c, d, e]\nlimits: {max_workers: 8}"),
            "max_workers (8) leaves 3 thread(s) once all 5 enrolled agents",
        ),
    ],
)
def test_bad_config_names_the_file_and_field(
    tmp_path: Path, edit: tuple[str, str], field: str
) -> None:
    path = tmp_path / "broker.yaml"
    path.write_text(VALID.replace(*edit))
    with pytest.raises(ConfigError) as info:
        BrokerConfig.load(path)
    assert str(path) in str(info.value) and field in str(info.value)


@pytest.mark.parametrize(
    ("field", "content", "said"),
    [
        ("key", None, "tls.key {}: file not found"),
        ("key", b"junk", "tls.key {}: not an unencrypted PEM private key"),
        ("cert", b"junk", "tls.cert {}: not a PEM certificate"),
        ("ca", None, "tls.ca {}: file not found"),
    ],
)
def test_an_unusable_tls_file_is_named_by_its_field(
    tmp_path: Path, field: str, content: bytes | None, said: str
) -> None:
    ca = FederationCA.init(tmp_path / "pki", "health-eu")
    ca.issue(Role.BROKER, "main")
    cert, key = ca.paths_for(Role.BROKER, "main")
    paths = {"ca": ca.directory / "ca.pem", "cert": cert, "key": key}
    if content is None:
        paths[field].unlink()
    else:
        paths[field].write_bytes(content)
    with pytest.raises(ValueError) as info:
        RotatingCredentials(
            paths["ca"], paths["cert"], paths["key"], federation="health-eu", name="main"
        )
    assert said.format(paths[field]) in str(info.value)


@pytest.mark.parametrize(
    ("content", "said"),
    [(None, "tls.crl {}: file not found"), (b"junk", "tls.crl {}: not a PEM CRL")],
)
def test_an_unusable_crl_at_start_is_named_by_its_field(
    tmp_path: Path, content: bytes | None, said: str
) -> None:
    ca = FederationCA.init(tmp_path / "pki", "health-eu")
    if content is None:
        ca.crl_path.unlink()
    else:
        ca.crl_path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        RevocationList(ca.crl_path, ca.directory / "ca.pem")
    assert said.format(ca.crl_path) in str(info.value)


def test_a_misspelt_config_key_is_named_with_the_closest_known_one(tmp_path: Path) -> None:
    path = tmp_path / "broker.yaml"
    path.write_text("federation: f\nlistn: 127.0.0.1:7443\n")
    with pytest.raises(ConfigError) as err:
        BrokerConfig.load(path)
    assert "listn: unknown key 'listn'; did you mean 'listen'? (known: federation," in str(
        err.value
    )
