"""The wire: generated protobuf/gRPC stubs (`fedsynth.wire.v1`), channels and bulk transfer."""
