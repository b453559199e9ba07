"""The committed stubs in fedsynth/wire/v1 are exactly what the .proto files generate."""

from __future__ import annotations

from fedsynth.wire.generate import STUB_DIR, generate_stubs


def test_committed_stubs_match_the_proto_contract() -> None:
    expected = generate_stubs()
    committed = {p.name: p.read_text("utf-8") for p in STUB_DIR.glob("*.py*")}
    stale = sorted(
        n for n in expected.keys() | committed.keys() if expected.get(n) != committed.get(n)
    )
    assert not stale, f"stale stubs {stale}: run `python -m fedsynth.wire.generate`"


def test_stubs_import_under_the_fedsynth_wire_package() -> None:
    from fedsynth.wire.v1 import consumer_pb2, supplier_pb2_grpc

    assert consumer_pb2.DownloadRequest.DESCRIPTOR.full_name == "fedsynth.v1.DownloadRequest"
    assert hasattr(supplier_pb2_grpc, "SupplierServiceStub")
