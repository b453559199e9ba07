"""The operator's side of the broker: a gRPC client and the `fedsynth operator` commands."""
