package out

import (
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/dapr/go-sdk/service/common"
)

// AppPort is the port an app program listens on: -port, else APP_PORT.
func AppPort() int {
	port := flag.Int("port", 0, "port to listen on (default: $APP_PORT)")
	flag.Parse()
	if *port == 0 {
		*port, _ = strconv.Atoi(os.Getenv("APP_PORT"))
	}
	if *port <= 0 {
		Fail("usage", errors.New("give -port or APP_PORT, and the binding names as arguments"))
	}
	if flag.NArg() == 0 {
		Fail("usage", errors.New("no binding names given"))
	}
	return *port
}

// Handler prints every event of binding `name` as
// {"event":"binding","name":...,"data":...,"metadata":{...}} and answers OK.
func Handler(flavour, name string) common.BindingInvocationHandler {
	return func(_ context.Context, in *common.BindingEvent) ([]byte, error) {
		md := in.Metadata
		if md == nil {
			md = map[string]string{}
		}
		Line(map[string]any{
			"event": "binding", "sdk": "go", "program": flavour, "name": name,
			"data": string(in.Data), "metadata": md,
		})
		return nil, nil
	}
}

// Serve runs s until SIGTERM or SIGINT, then stops it gracefully. It prints
// {"event":"started"} once the port accepts connections.
func Serve(s common.Service, flavour string, port int) {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- s.Start() }()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-done:
			Fail("serve", err)
		default:
		}
		if time.Now().After(deadline) {
			Fail("serve", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	Line(map[string]any{"event": "started", "sdk": "go", "program": flavour, "port": port})
	select {
	case err := <-done:
		if err != nil {
			Fail("serve", err)
		}
	case <-stop:
		_ = s.GracefulStop()
		Line(map[string]any{"event": "stopped", "sdk": "go", "program": flavour})
	}
}
