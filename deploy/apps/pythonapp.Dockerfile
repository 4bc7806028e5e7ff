# The quickstart producer, unchanged, as an image (build context: examples/bindings/pythonapp):
#   docker build -f deploy/apps/pythonapp.Dockerfile -t bindings-pythonapp:dev examples/bindings/pythonapp
FROM python:3.12-slim-bookworm
# tini runs as PID 1 and forwards SIGTERM: python as PID 1 would ignore it and the pod would
# wait out its whole termination grace period before the sidecar could stop gracefully.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY app.py ./
# Print each line at once; write no .pyc (the root filesystem is read-only in the pod).
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python3", "app.py"]
