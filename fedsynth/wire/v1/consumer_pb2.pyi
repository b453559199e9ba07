from fedsynth.wire.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReleasePart(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELEASE_PART_UNSPECIFIED: _ClassVar[ReleasePart]
    RELEASE_PART_DATASET: _ClassVar[ReleasePart]
    RELEASE_PART_AUDIT_HTML: _ClassVar[ReleasePart]
RELEASE_PART_UNSPECIFIED: ReleasePart
RELEASE_PART_DATASET: ReleasePart
RELEASE_PART_AUDIT_HTML: ReleasePart

class DownloadRequest(_message.Message):
    __slots__ = ("release_id", "part", "offset")
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    release_id: str
    part: ReleasePart
    offset: int
    def __init__(self, release_id: _Optional[str] = ..., part: _Optional[_Union[ReleasePart, str]] = ..., offset: _Optional[int] = ...) -> None: ...
