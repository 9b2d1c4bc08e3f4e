package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// healthcheckTimeout bounds one `fleetacs healthcheck`, connection and
// answer together: container runtimes run it every few seconds.
const healthcheckTimeout = 3 * time.Second

// healthcheck asks the admin listener of a process started with the same
// flags (-server.http-addr, on this host) for /readyz, or /healthz with the
// argument "live", and returns 0 when it answers 200. It is the container
// health check of images without a shell or curl (docs/deploy.md,
// "Compose").
func healthcheck(ctx context.Context, adminAddr string, args []string, stderr io.Writer) int {
	path := "/readyz"
	switch {
	case len(args) == 0:
	case len(args) == 1 && args[0] == "live":
		path = "/healthz"
	case len(args) == 1 && args[0] == "ready":
	default:
		return usageError(stderr, fmt.Sprintf("healthcheck takes one optional argument, live or ready, not %q", args))
	}
	host, port, err := net.SplitHostPort(adminAddr)
	if err != nil || port == "" || port == "0" {
		fmt.Fprintf(stderr, "fleetacs healthcheck: -server.http-addr %q names no fixed port\n", adminAddr)
		return 2
	}
	// A wildcard listener is reached on loopback.
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "fleetacs healthcheck: %v\n", err)
		return 2
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "fleetacs healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "fleetacs healthcheck: %s: %s %s\n", url, resp.Status, body)
		return 1
	}
	return 0
}
