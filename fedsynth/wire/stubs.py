"""Client stubs for the broker's services, with the bulk methods on the zero-copy codec.

They are the generated stubs but for `Upload`, `FetchArtifact` and `Download`, whose chunks
go through `fedsynth.wire.bulk`: the bytes on the wire are the same, so either side may use
plain protobuf.
"""

from __future__ import annotations

import grpc

from fedsynth.wire import bulk
from fedsynth.wire.v1 import consumer_pb2, consumer_pb2_grpc, supplier_pb2, supplier_pb2_grpc

SUPPLIER_SERVICE = "/fedsynth.v1.SupplierService/"
CONSUMER_SERVICE = "/fedsynth.v1.ConsumerService/"


class SupplierStub(supplier_pb2_grpc.SupplierServiceStub):
    """`Upload` takes `bulk.UploadFrame`s; `FetchArtifact` yields `bulk.DownloadFrame`s."""

    def __init__(self, channel: grpc.Channel) -> None:
        super().__init__(channel)
        self.Upload = channel.stream_unary(
            SUPPLIER_SERVICE + "Upload",
            request_serializer=bulk.encode_upload,
            response_deserializer=supplier_pb2.UploadStatus.FromString,
        )
        self.FetchArtifact = channel.unary_stream(
            SUPPLIER_SERVICE + "FetchArtifact",
            request_serializer=supplier_pb2.FetchArtifactRequest.SerializeToString,
            response_deserializer=bulk.decode_download,
        )


class ConsumerStub(consumer_pb2_grpc.ConsumerServiceStub):
    """`Download` yields `bulk.DownloadFrame`s."""

    def __init__(self, channel: grpc.Channel) -> None:
        super().__init__(channel)
        self.Download = channel.unary_stream(
            CONSUMER_SERVICE + "Download",
            request_serializer=consumer_pb2.DownloadRequest.SerializeToString,
            response_deserializer=bulk.decode_download,
        )
