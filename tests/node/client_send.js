// Sends to an output binding with the official Node SDK's DaprClient.
// Usage: node client_send.js http|grpc DAPR_PORT BINDING DATA_JSON METADATA_JSON
// Prints one JSON line {"result": "ok", "response"} and exits 0, or
// {"result": "error", "message"} and exits 1.
const { DaprClient, CommunicationProtocolEnum, LogLevel } = require('@dapr/dapr');

async function main() {
  const [protocol, port, binding, data, metadata] = process.argv.slice(2);
  const client = new DaprClient({
    daprHost: '127.0.0.1',
    daprPort: port,
    communicationProtocol:
      protocol === 'grpc' ? CommunicationProtocolEnum.GRPC : CommunicationProtocolEnum.HTTP,
    logger: { level: LogLevel.Error },
  });
  try {
    // The first call waits for the sidecar (the SDK probes its metadata endpoint).
    const response = await client.binding.send(binding, 'create', JSON.parse(data), JSON.parse(metadata));
    console.log(JSON.stringify({ result: 'ok', response: response ?? null }));
    return 0;
  } catch (e) {
    console.log(JSON.stringify({ result: 'error', message: String(e && e.message ? e.message : e) }));
    return 1;
  } finally {
    await client.stop();
  }
}

main().then((code) => process.exit(code), (e) => {
  console.log(JSON.stringify({ result: 'error', message: String(e) }));
  process.exit(2);
});
