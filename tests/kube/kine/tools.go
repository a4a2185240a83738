//go:build tools

// Package tools pins kine's main package so that `go mod tidy` keeps its dependencies.
package tools

import _ "github.com/k3s-io/kine"
