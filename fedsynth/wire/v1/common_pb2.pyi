from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Chunk(_message.Message):
    __slots__ = ("offset", "data")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class ObjectInfo(_message.Message):
    __slots__ = ("sha256", "size", "media_type")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size: int
    media_type: str
    def __init__(self, sha256: _Optional[str] = ..., size: _Optional[int] = ..., media_type: _Optional[str] = ...) -> None: ...

class DownloadMessage(_message.Message):
    __slots__ = ("info", "chunk")
    INFO_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    info: ObjectInfo
    chunk: Chunk
    def __init__(self, info: _Optional[_Union[ObjectInfo, _Mapping]] = ..., chunk: _Optional[_Union[Chunk, _Mapping]] = ...) -> None: ...

class ReleaseSummary(_message.Message):
    __slots__ = ("release_id", "job_id", "name", "dataset_sha256", "dataset_size", "topology", "synthesizer", "created_at", "withdrawn_at", "withdrawn_reason")
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATASET_SHA256_FIELD_NUMBER: _ClassVar[int]
    DATASET_SIZE_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGY_FIELD_NUMBER: _ClassVar[int]
    SYNTHESIZER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_AT_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_REASON_FIELD_NUMBER: _ClassVar[int]
    release_id: str
    job_id: str
    name: str
    dataset_sha256: str
    dataset_size: int
    topology: str
    synthesizer: str
    created_at: str
    withdrawn_at: str
    withdrawn_reason: str
    def __init__(self, release_id: _Optional[str] = ..., job_id: _Optional[str] = ..., name: _Optional[str] = ..., dataset_sha256: _Optional[str] = ..., dataset_size: _Optional[int] = ..., topology: _Optional[str] = ..., synthesizer: _Optional[str] = ..., created_at: _Optional[str] = ..., withdrawn_at: _Optional[str] = ..., withdrawn_reason: _Optional[str] = ...) -> None: ...

class ListReleasesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ReleaseList(_message.Message):
    __slots__ = ("releases", "next_page_token")
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    releases: _containers.RepeatedCompositeFieldContainer[ReleaseSummary]
    next_page_token: str
    def __init__(self, releases: _Optional[_Iterable[_Union[ReleaseSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ReleaseRef(_message.Message):
    __slots__ = ("release_id",)
    RELEASE_ID_FIELD_NUMBER: _ClassVar[int]
    release_id: str
    def __init__(self, release_id: _Optional[str] = ...) -> None: ...

class ReleaseManifest(_message.Message):
    __slots__ = ("summary", "attestation_json", "signature", "broker_certificate_pem", "audit_report_json")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ATTESTATION_JSON_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    BROKER_CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    AUDIT_REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    summary: ReleaseSummary
    attestation_json: bytes
    signature: bytes
    broker_certificate_pem: bytes
    audit_report_json: bytes
    def __init__(self, summary: _Optional[_Union[ReleaseSummary, _Mapping]] = ..., attestation_json: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., broker_certificate_pem: _Optional[bytes] = ..., audit_report_json: _Optional[bytes] = ...) -> None: ...
