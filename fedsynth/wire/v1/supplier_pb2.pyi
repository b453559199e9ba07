from fedsynth.wire.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UploadKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPLOAD_KIND_UNSPECIFIED: _ClassVar[UploadKind]
    UPLOAD_KIND_RAW: _ClassVar[UploadKind]
    UPLOAD_KIND_PREPARED: _ClassVar[UploadKind]
    UPLOAD_KIND_SYNTHETIC: _ClassVar[UploadKind]
    UPLOAD_KIND_STATISTICS: _ClassVar[UploadKind]
    UPLOAD_KIND_REPORT: _ClassVar[UploadKind]
UPLOAD_KIND_UNSPECIFIED: UploadKind
UPLOAD_KIND_RAW: UploadKind
UPLOAD_KIND_PREPARED: UploadKind
UPLOAD_KIND_SYNTHETIC: UploadKind
UPLOAD_KIND_STATISTICS: UploadKind
UPLOAD_KIND_REPORT: UploadKind

class SubscribeRequest(_message.Message):
    __slots__ = ("supplier", "agent_version")
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    supplier: str
    agent_version: str
    def __init__(self, supplier: _Optional[str] = ..., agent_version: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("task_id", "job_id", "kind", "payload_json", "artifacts")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    job_id: str
    kind: str
    payload_json: bytes
    artifacts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_id: _Optional[str] = ..., job_id: _Optional[str] = ..., kind: _Optional[str] = ..., payload_json: _Optional[bytes] = ..., artifacts: _Optional[_Iterable[str]] = ...) -> None: ...

class TaskRef(_message.Message):
    __slots__ = ("supplier", "task_id")
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    supplier: str
    task_id: str
    def __init__(self, supplier: _Optional[str] = ..., task_id: _Optional[str] = ...) -> None: ...

class TaskStatus(_message.Message):
    __slots__ = ("task_id", "open", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    open: bool
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., open: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class TaskResult(_message.Message):
    __slots__ = ("supplier", "task_id", "ok", "result_json", "error", "uploads")
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    UPLOADS_FIELD_NUMBER: _ClassVar[int]
    supplier: str
    task_id: str
    ok: bool
    result_json: bytes
    error: str
    uploads: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, supplier: _Optional[str] = ..., task_id: _Optional[str] = ..., ok: _Optional[bool] = ..., result_json: _Optional[bytes] = ..., error: _Optional[str] = ..., uploads: _Optional[_Iterable[str]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("accepted", "detail")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    detail: str
    def __init__(self, accepted: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("supplier", "job_id", "task_id", "name", "kind", "size", "sha256", "media_type")
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    supplier: str
    job_id: str
    task_id: str
    name: str
    kind: UploadKind
    size: int
    sha256: str
    media_type: str
    def __init__(self, supplier: _Optional[str] = ..., job_id: _Optional[str] = ..., task_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[UploadKind, str]] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., media_type: _Optional[str] = ...) -> None: ...

class UploadStatus(_message.Message):
    __slots__ = ("upload_id", "received", "complete", "sha256")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    received: int
    complete: bool
    sha256: str
    def __init__(self, upload_id: _Optional[str] = ..., received: _Optional[int] = ..., complete: _Optional[bool] = ..., sha256: _Optional[str] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("upload_id", "offset", "data", "sha256")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    offset: int
    data: bytes
    sha256: str
    def __init__(self, upload_id: _Optional[str] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., sha256: _Optional[str] = ...) -> None: ...

class FetchArtifactRequest(_message.Message):
    __slots__ = ("supplier", "sha256", "offset")
    SUPPLIER_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    supplier: str
    sha256: str
    offset: int
    def __init__(self, supplier: _Optional[str] = ..., sha256: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...
