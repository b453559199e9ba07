"""Wire codec for the contract's bulk messages: download chunks and upload chunks.

Protobuf's Python runtime copies a bytes field when it builds a message, again when it
serializes it, again when it parses one and once more each time the field is read: four passes
over every byte of a transfer, most of them on the thread that drives the gRPC stream. These
functions write the same wire bytes with one copy and read them with none: a decoded chunk's
data is a view of the received message. Anything but the plain layout (an `info` message,
unknown, repeated or oddly typed fields) is handed to protobuf, so every valid encoding reads
as protobuf reads it and every invalid one fails as protobuf fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedsynth.wire.v1 import common_pb2, supplier_pb2

VARINT, LENGTH = 0, 2


@dataclass(frozen=True, slots=True)
class ChunkFrame:
    """A slice of a downloaded object: where it starts and its bytes."""

    offset: int
    data: bytes | memoryview


DownloadFrame = common_pb2.ObjectInfo | ChunkFrame


@dataclass(frozen=True, slots=True)
class UploadFrame:
    """One chunk of an upload (`UploadChunk` on the wire); `sha256` only on the last one when
    the header left it empty."""

    upload_id: str
    offset: int
    data: bytes | memoryview
    sha256: str = ""


class _NotPlain(Exception):
    """The message is not in the plain layout; protobuf reads it instead."""


def encode_download(message: DownloadFrame) -> bytes:
    """A `DownloadMessage` on the wire: the object info, or a chunk built with one copy."""
    if isinstance(message, common_pb2.ObjectInfo):
        return common_pb2.DownloadMessage(info=message).SerializeToString()
    body = _field_varint(1, message.offset) + _field_header(2, len(message.data))
    head = _key(2, LENGTH) + _varint(len(body) + len(message.data)) + body
    return b"".join((head, message.data))


def decode_download(payload: bytes) -> DownloadFrame:
    """A received `DownloadMessage`: its object info, or its chunk with data viewing `payload`."""
    view = memoryview(payload)
    try:
        _, outer = _plain_fields(view, 0, len(view), {2: LENGTH})
        if 2 not in outer:
            raise _NotPlain
        numbers, spans = _plain_fields(view, *outer[2], {1: VARINT, 2: LENGTH})
        start, end = spans.get(2, (0, 0))
        return ChunkFrame(offset=numbers.get(1, 0), data=view[start:end])
    except (_NotPlain, IndexError):
        message = common_pb2.DownloadMessage.FromString(payload)
        if message.HasField("info"):
            return message.info
        return ChunkFrame(offset=message.chunk.offset, data=message.chunk.data)


def encode_upload(message: UploadFrame | supplier_pb2.UploadChunk) -> bytes:
    """An `UploadChunk` on the wire, built with one copy of the data."""
    if isinstance(message, supplier_pb2.UploadChunk):
        return message.SerializeToString()
    upload_id = message.upload_id.encode()
    head = (
        _field_header(1, len(upload_id))
        + upload_id
        + _field_varint(2, message.offset)
        + _field_header(3, len(message.data))
    )
    sha256 = message.sha256.encode()
    tail = _field_header(4, len(sha256)) + sha256
    return b"".join((head, message.data, tail))


def decode_upload(payload: bytes) -> UploadFrame:
    """A received `UploadChunk`, its data a view of `payload`."""
    view = memoryview(payload)
    try:
        numbers, spans = _plain_fields(
            view, 0, len(view), {1: LENGTH, 2: VARINT, 3: LENGTH, 4: LENGTH}
        )
        start, end = spans.get(3, (0, 0))
        return UploadFrame(
            upload_id=_text(view, spans.get(1)),
            offset=numbers.get(2, 0),
            data=view[start:end],
            sha256=_text(view, spans.get(4)),
        )
    except (_NotPlain, IndexError):
        message = supplier_pb2.UploadChunk.FromString(payload)
        return UploadFrame(message.upload_id, message.offset, message.data, message.sha256)


def _plain_fields(
    view: memoryview, at: int, end: int, expected: dict[int, int]
) -> tuple[dict[int, int], dict[int, tuple[int, int]]]:
    """The fields of `view[at:end]`, each expected one at most once with its expected wire
    type: varints' values, and length-delimited fields' (start, end) in `view`. Anything else
    is not plain."""
    numbers: dict[int, int] = {}
    spans: dict[int, tuple[int, int]] = {}
    while at < end:
        key, at = _read_varint(view, at)
        number, wire_type = key >> 3, key & 7
        if expected.get(number) != wire_type or number in numbers or number in spans:
            raise _NotPlain
        value, at = _read_varint(view, at)
        if wire_type == LENGTH:
            if at + value > end:
                raise _NotPlain
            spans[number] = (at, at + value)
            at += value
        else:
            numbers[number] = value
    if at != end:
        raise _NotPlain
    return numbers, spans


def _read_varint(view: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = view[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value >> 64:
                raise _NotPlain
            return value, at
        shift += 7
        if shift > 63:
            raise _NotPlain


def _text(view: memoryview, span: tuple[int, int] | None) -> str:
    if span is None:
        return ""
    try:
        return str(view[span[0] : span[1]], "utf-8")
    except UnicodeDecodeError as exc:
        raise _NotPlain from exc


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _field_varint(number: int, value: int) -> bytes:
    """A varint field as proto3 writes it: left out when zero."""
    return _key(number, VARINT) + _varint(value) if value else b""


def _field_header(number: int, length: int) -> bytes:
    """The key and length of a length-delimited field, left out when empty as proto3 does."""
    return _key(number, LENGTH) + _varint(length) if length else b""
