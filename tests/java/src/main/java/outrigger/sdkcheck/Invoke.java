package outrigger.sdkcheck;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.dapr.client.DaprClient;
import io.dapr.client.DaprClientBuilder;
import io.dapr.client.domain.InvokeBindingRequest;
import io.dapr.exceptions.DaprException;
import io.dapr.utils.TypeRef;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Calls one output binding with the Java SDK's DaprClient.invokeBinding, finding
 * the sidecar the way any Dapr app does (DAPR_GRPC_PORT, DAPR_HTTP_PORT,
 * DAPR_SIDECAR_IP), and prints one JSON line: {"result":"ok","data":...} or
 * {"result":"error","code":...,"message":...} with exit status 1.
 *
 * <p>Usage: Invoke NAME OPERATION DATA-JSON [METADATA-JSON-OBJECT]. The data is
 * parsed and handed to the SDK as an object, which serializes it to JSON.
 */
public final class Invoke {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Duration LIMIT = Duration.ofSeconds(40);

  public static void main(String[] args) throws Exception {
    if (args.length < 3) {
      fail("usage", "Invoke NAME OPERATION DATA-JSON [METADATA-JSON]");
    }
    Object data = JSON.readValue(args[2], Object.class);
    Map<String, String> metadata = new LinkedHashMap<>();
    if (args.length > 3) {
      Map<String, Object> given =
          JSON.readValue(args[3], new TypeReference<Map<String, Object>>() {});
      given.forEach((k, v) -> metadata.put(k, String.valueOf(v)));
    }
    int code = 0;
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("sdk", "java");
    out.put("program", "invoke");
    try (DaprClient client = new DaprClientBuilder().build()) {
      // As apps do before their first call: polls /v1.0/healthz/outbound.
      // block() has its own limit too: without a sidecar the wait was seen
      // to outlast its timeout.
      client.waitForSidecar(30_000).block(LIMIT);
      InvokeBindingRequest req =
          new InvokeBindingRequest(args[0], args[1]).setData(data).setMetadata(metadata);
      byte[] got = client.invokeBinding(req, TypeRef.BYTE_ARRAY).block(LIMIT);
      out.put("result", "ok");
      out.put("data", got == null ? "" : new String(got, StandardCharsets.UTF_8));
    } catch (DaprException e) {
      out.put("result", "error");
      out.put("code", e.getErrorCode());
      out.put("message", e.getMessage());
      code = 1;
    } catch (RuntimeException e) {
      // A time limit or a transport failure outside the SDK's error mapping.
      out.put("result", "error");
      out.put("code", e.getClass().getSimpleName());
      out.put("message", String.valueOf(e.getMessage()));
      code = 1;
    }
    System.out.println(JSON.writeValueAsString(out));
    System.out.flush();
    // grpc and reactor leave non-daemon threads behind.
    System.exit(code);
  }

  private static void fail(String what, String message) throws Exception {
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("event", "failed");
    out.put("result", "error");
    out.put("what", what);
    out.put("message", message);
    System.out.println(JSON.writeValueAsString(out));
    System.exit(1);
  }
}
