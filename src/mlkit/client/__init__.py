"""Clients for the mlkit model server: REST v1/v2 (sync and async, httpx) and v2 gRPC.

``ServingClient`` / ``AsyncServingClient`` live in ``mlkit.client.http``; ``GRPCServingClient`` in
``mlkit.client.grpc`` (imported lazily here so the REST client does not need grpcio).
"""

from mlkit.client.http import AsyncServingClient, ServingClient, ServingError, encode_image

__all__ = ["AsyncServingClient", "GRPCServingClient", "ServingClient", "ServingError", "encode_image"]


def __getattr__(name: str):
    if name == "GRPCServingClient":
        from mlkit.client.grpc import GRPCServingClient

        return GRPCServingClient
    raise AttributeError(name)
