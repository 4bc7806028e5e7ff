"""Invokes an output binding with the official Python SDK (`DaprClient`, gRPC).

Usage: sdk_invoke.py BINDING OPERATION DATA METADATA_JSON
The sidecar is found through DAPR_RUNTIME_HOST, DAPR_HTTP_PORT and DAPR_GRPC_PORT,
as the SDK reads them. Prints one JSON line: {"result": "ok", "data", "metadata"}
and exits 0, or {"result": "error", "code", "message"} and exits 1.
"""
import json
import sys

import grpc
from dapr.clients import DaprClient


def main() -> int:
    binding, operation, data, metadata = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    # The constructor blocks until GET /v1.0/healthz/outbound answers 204.
    with DaprClient() as client:
        try:
            resp = client.invoke_binding(binding, operation, data, metadata)
        except grpc.RpcError as e:
            print(json.dumps({"result": "error", "code": e.code().name, "message": e.details()}), flush=True)
            return 1
        print(json.dumps({"result": "ok", "data": resp.text(), "metadata": resp.binding_metadata}), flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
