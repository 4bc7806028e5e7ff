// Command httpapp is an input-binding app on the Go SDK's HTTP service
// (service/http): AddBindingInvocationHandler routes /BINDING for each binding
// named on the command line (the SDK answers the sidecar's OPTIONS probe and
// hands every request header over as metadata). Every event is printed as one
// JSON line (see out.Handler) and answered OK.
//
// Usage: httpapp [-port N | APP_PORT=N] BINDING...
package main

import (
	"flag"
	"net"
	"strconv"

	daprd "github.com/dapr/go-sdk/service/http"

	"outrigger.local/sdkgo/internal/out"
)

func main() {
	port := out.AppPort()
	// Loopback only: the sidecar runs beside the app.
	s := daprd.NewService(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	for _, name := range flag.Args() {
		if err := s.AddBindingInvocationHandler(name, out.Handler("httpapp", name)); err != nil {
			out.Fail("add handler", err)
		}
	}
	out.Serve(s, "httpapp", port)
}
