"""A refusal the broker returns to a peer as a gRPC status with a clear message."""

from __future__ import annotations

import grpc


class Refusal(Exception):
    """Raised inside the broker; the service layer turns it into `code` with `detail`."""

    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
