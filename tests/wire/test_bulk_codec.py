"""The bulk codec reads and writes exactly what protobuf does, for any message on the wire."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st

from fedsynth.wire.bulk import (
    ChunkFrame,
    UploadFrame,
    decode_download,
    decode_upload,
    encode_download,
    encode_upload,
)
from fedsynth.wire.v1 import common_pb2, supplier_pb2

offsets = st.integers(min_value=0, max_value=2**64 - 1)
texts = st.text(max_size=80)


@given(offsets, st.binary(max_size=4096))
def test_an_encoded_chunk_is_the_download_message_protobuf_reads(offset: int, data: bytes) -> None:
    message = common_pb2.DownloadMessage.FromString(encode_download(ChunkFrame(offset, data)))
    assert message.WhichOneof("body") == "chunk"
    assert (message.chunk.offset, message.chunk.data) == (offset, data)


@given(offsets, st.binary(max_size=4096))
def test_a_protobuf_chunk_decodes_to_its_offset_and_a_view_of_its_bytes(
    offset: int, data: bytes
) -> None:
    payload = common_pb2.DownloadMessage(
        chunk=common_pb2.Chunk(offset=offset, data=data)
    ).SerializeToString()
    frame = decode_download(payload)
    assert isinstance(frame, ChunkFrame)
    assert (frame.offset, bytes(frame.data)) == (offset, data)
    if data:
        assert isinstance(frame.data, memoryview) and frame.data.obj is payload


@given(st.text(max_size=64), st.integers(min_value=0, max_value=2**64 - 1), texts)
def test_object_info_round_trips_through_the_codec(sha256: str, size: int, media: str) -> None:
    info = common_pb2.ObjectInfo(sha256=sha256, size=size, media_type=media)
    assert common_pb2.DownloadMessage.FromString(encode_download(info)).info == info
    assert decode_download(encode_download(info)) == info


@given(texts, offsets, st.binary(max_size=4096), texts)
def test_an_encoded_upload_frame_is_the_upload_chunk_protobuf_reads(
    upload_id: str, offset: int, data: bytes, sha256: str
) -> None:
    payload = encode_upload(UploadFrame(upload_id, offset, data, sha256))
    expected = supplier_pb2.UploadChunk(
        upload_id=upload_id, offset=offset, data=data, sha256=sha256
    )
    assert supplier_pb2.UploadChunk.FromString(payload) == expected
    assert payload == expected.SerializeToString()
    assert decode_upload(payload) == UploadFrame(upload_id, offset, data, sha256)


def _protobuf_download(payload: bytes) -> tuple[str, object]:
    try:
        message = common_pb2.DownloadMessage.FromString(payload)
    except DecodeError:
        return "error", None
    if message.HasField("info"):
        return "info", message.info
    return "chunk", (message.chunk.offset, message.chunk.data)


def _ours_download(payload: bytes) -> tuple[str, object]:
    try:
        frame = decode_download(payload)
    except DecodeError:
        return "error", None
    if isinstance(frame, common_pb2.ObjectInfo):
        return "info", frame
    return "chunk", (frame.offset, bytes(frame.data))


# Raw wire pieces: keys of known and unknown fields of every wire type, lengths and varints, so
# that the fuzzed messages are often well-formed, often plain, and often neither.
wire_pieces = st.lists(
    st.sampled_from(
        [
            *(b"\x08", b"\x0a", b"\x10", b"\x12", b"\x1a", b"\x22", b"\x28", b"\x0d", b"\x09"),
            *(b"\x00", b"\x01", b"\x02", b"\x05", b"\x7f", b"\x80", b"\xff\x01", b"\xc3\xa9"),
            *(b"\xff" * 9 + b"\x01", b"\xff" * 10 + b"\x01", b"abc", b"\xc3"),
        ]
    ),
    max_size=16,
).map(b"".join)


@given(st.one_of(wire_pieces, st.binary(max_size=64)))
def test_any_bytes_decode_as_protobuf_decodes_them_or_fail_as_it_fails(payload: bytes) -> None:
    assert _ours_download(payload) == _protobuf_download(payload)
    nested = b"\x12" + bytes([len(payload)]) + payload if len(payload) < 128 else payload
    assert _ours_download(nested) == _protobuf_download(nested)


@given(st.one_of(wire_pieces, st.binary(max_size=64)))
def test_any_bytes_decode_as_an_upload_chunk_as_protobuf_decodes_them(payload: bytes) -> None:
    try:
        expected = supplier_pb2.UploadChunk.FromString(payload)
    except DecodeError:
        with pytest.raises(DecodeError):
            decode_upload(payload)
        return
    frame = decode_upload(payload)
    got = (frame.upload_id, frame.offset, bytes(frame.data), frame.sha256)
    assert got == (expected.upload_id, expected.offset, expected.data, expected.sha256)
