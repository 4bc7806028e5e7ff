# The quickstart consumer, unchanged, as an image (build context: examples/bindings/nodeapp):
#   docker build -f deploy/apps/nodeapp.Dockerfile -t bindings-nodeapp:dev examples/bindings/nodeapp
FROM node:22-bookworm-slim
# tini runs as PID 1 and forwards SIGTERM: node as PID 1 would ignore it and the pod would
# wait out its whole termination grace period before the sidecar could stop gracefully.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY app.js ./
ENV APP_PORT=3000
EXPOSE 3000
USER 65532:65532
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "app.js"]
