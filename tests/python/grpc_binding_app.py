"""An input-binding app written with the official Python SDK (`dapr.ext.grpc.App`).

Usage: grpc_binding_app.py BINDING
Listens on GRPC_APP_PORT (the SDK's own setting) and prints one JSON line per
event: {"event": "binding", "name", "data", "metadata"} (the event metadata the
SDK hands the handler).
"""
import json
import sys

from dapr.ext.grpc import App, BindingRequest

binding = sys.argv[1]
app = App()


@app.binding(binding)
def on_event(request: BindingRequest):
    print(json.dumps({
        "event": "binding", "name": binding, "data": request.text(),
        "metadata": dict(request.binding_metadata),
    }), flush=True)


print(json.dumps({"event": "starting", "binding": binding}), flush=True)
app.run()
