// Command invoke calls one output binding with the Go SDK's
// client.InvokeBinding over gRPC, finding the sidecar the way any Dapr app
// does (DAPR_GRPC_PORT or DAPR_GRPC_ENDPOINT), and prints what came back as
// one JSON line: {"result":"ok","data":...,"metadata":{...}}, or
// {"result":"error","code":"<gRPC code>","message":...} and exit status 1.
//
// Usage: invoke NAME OPERATION DATA [METADATA-JSON-OBJECT]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"outrigger.local/sdkgo/internal/out"
)

func main() {
	if len(os.Args) < 4 {
		out.Fail("usage", errors.New("invoke NAME OPERATION DATA [METADATA-JSON]"))
	}
	meta := map[string]string{}
	if len(os.Args) > 4 {
		if err := json.Unmarshal([]byte(os.Args[4]), &meta); err != nil {
			out.Fail("metadata argument", err)
		}
	}
	client, err := dapr.NewClient()
	if err != nil {
		out.Fail("connect", err)
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := client.InvokeBinding(ctx, &dapr.InvokeBindingRequest{
		Name:      os.Args[1],
		Operation: os.Args[2],
		Data:      []byte(os.Args[3]),
		Metadata:  meta,
	})
	if err != nil {
		// The SDK wraps the gRPC status: take the sidecar's own status (whose
		// message status.FromError would replace by the wrapped text).
		st := status.New(codes.Unknown, err.Error())
		var grpcErr interface{ GRPCStatus() *status.Status }
		if errors.As(err, &grpcErr) {
			st = grpcErr.GRPCStatus()
		}
		out.Line(map[string]any{
			"sdk": "go", "program": "invoke", "result": "error",
			"code": st.Code().String(), "message": st.Message(), "error": err.Error(),
		})
		os.Exit(1)
	}
	data, md := "", map[string]string{}
	if resp != nil {
		data = string(resp.Data)
		if resp.Metadata != nil {
			md = resp.Metadata
		}
	}
	out.Line(map[string]any{"sdk": "go", "program": "invoke", "result": "ok", "data": data, "metadata": md})
}
