// An input-binding app written with the official Node SDK's DaprServer.
// Usage: node server_receive.js http|grpc APP_PORT DAPR_PORT BINDING
// Prints {"event": "started"} once DaprServer.start() returned (it waits for the
// sidecar), then one JSON line {"event": "binding", "data"} per event. Runs until killed.
const { DaprServer, CommunicationProtocolEnum, LogLevel } = require('@dapr/dapr');

async function main() {
  const [protocol, appPort, daprPort, binding] = process.argv.slice(2);
  const server = new DaprServer({
    serverHost: '127.0.0.1',
    serverPort: appPort,
    communicationProtocol:
      protocol === 'grpc' ? CommunicationProtocolEnum.GRPC : CommunicationProtocolEnum.HTTP,
    clientOptions: { daprHost: '127.0.0.1', daprPort },
    logger: { level: LogLevel.Error },
  });
  await server.binding.receive(binding, async (data) => {
    console.log(JSON.stringify({ event: 'binding', data }));
  });
  await server.start();
  console.log(JSON.stringify({ event: 'started' }));
}

main().catch((e) => {
  console.log(JSON.stringify({ event: 'failed', message: String(e && e.stack ? e.stack : e) }));
  process.exit(1);
});
