//go:build tools

// Records the control plane's packages in go.mod/go.sum (go mod tidy reads this file; it is
// never built). The binaries themselves come from `go build k8s.io/kubernetes/cmd/...`.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubectl/pkg/cmd"
	_ "k8s.io/component-base/cli"
)
