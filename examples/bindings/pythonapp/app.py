# The quickstart producer: posts one order a second to the `sample-topic`
# output binding through the sidecar's HTTP API and prints the response.
import os
import time

import requests

DAPR_URL = "http://localhost:{}/v1.0/bindings/sample-topic".format(os.getenv("DAPR_HTTP_PORT", "3500"))
# Not in the tutorial: tests shorten the run with these two.
INTERVAL = float(os.getenv("ORDER_INTERVAL", "1"))
COUNT = int(os.getenv("ORDER_COUNT", "0"))  # 0: forever

n = 0
while COUNT == 0 or n < COUNT:
    n += 1
    payload = {"data": {"orderId": n}, "operation": "create"}
    print(payload, flush=True)
    try:
        print(requests.post(DAPR_URL, json=payload), flush=True)
    except Exception as e:  # the sidecar may not be up yet; keep going like the tutorial
        print(e, flush=True)
    time.sleep(INTERVAL)
