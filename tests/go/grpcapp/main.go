// Command grpcapp is an input-binding app on the Go SDK's gRPC service
// (service/grpc): it registers AddBindingInvocationHandler for each binding
// named on the command line, so the sidecar learns them through
// ListInputBindings and delivers with OnBindingEvent. Every event is printed
// as one JSON line (see out.Handler) and answered OK.
//
// Usage: grpcapp [-port N | APP_PORT=N] BINDING...
package main

import (
	"flag"
	"net"
	"strconv"

	daprd "github.com/dapr/go-sdk/service/grpc"

	"outrigger.local/sdkgo/internal/out"
)

func main() {
	port := out.AppPort()
	// Loopback only: the sidecar runs beside the app.
	lis, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		out.Fail("listen", err)
	}
	s := daprd.NewServiceWithListener(lis)
	for _, name := range flag.Args() {
		if err := s.AddBindingInvocationHandler(name, out.Handler("grpcapp", name)); err != nil {
			out.Fail("add handler", err)
		}
	}
	out.Serve(s, "grpcapp", port)
}
