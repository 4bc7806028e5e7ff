// Package out prints the one-JSON-object-per-line records the integration
// tests and scripts/sdk-check.sh read from the SDK programs.
package out

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
)

var mu sync.Mutex

// Line writes v as one compact JSON line on stdout.
func Line(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"event": "failed", "message": err.Error()})
	}
	mu.Lock()
	defer mu.Unlock()
	fmt.Fprintln(os.Stdout, string(b))
}

// Fail prints a failure line and exits 1.
func Fail(what string, err error) {
	Line(map[string]any{"event": "failed", "result": "error", "what": what, "message": err.Error()})
	os.Exit(1)
}
