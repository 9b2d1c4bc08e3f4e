package check

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
	"google.golang.org/grpc"
)

// resolveAsWorker asks the files service for a firmware file the way a
// session worker does for a preset's firmware_version: at the worker's
// FLEETACS_CLIENT_FILES_ADDR, with the internal credential (token, and
// mutual TLS when set) of the worker's environment env. The version has no
// file: a reachable, authorized files service answers "not found" (no
// error); an unreachable one, a refused credential or a listener without
// the files service fail.
func resolveAsWorker(ctx context.Context, env []string) error {
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	addr := vars["FLEETACS_CLIENT_FILES_ADDR"]
	if addr == "" {
		return fmt.Errorf("the worker has no FLEETACS_CLIENT_FILES_ADDR")
	}
	cred, err := apiauth.NewInternal(apiauth.InternalConfig{
		TokenFile:     vars["FLEETACS_INTERNAL_TOKEN_FILE"],
		TLSCertFile:   vars["FLEETACS_INTERNAL_TLS_CERT_FILE"],
		TLSKeyFile:    vars["FLEETACS_INTERNAL_TLS_KEY_FILE"],
		TLSCAFile:     vars["FLEETACS_INTERNAL_TLS_CA_FILE"],
		TLSServerName: vars["FLEETACS_INTERNAL_TLS_SERVER_NAME"],
	}, "", nil)
	if err != nil {
		return err
	}
	if err := cred.Load(); err != nil {
		return err
	}
	cc, err := grpc.NewClient(addr, cred.DialOptions()...)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := filesv1.NewFilesInternalServiceClient(cc).ResolveFile(ctx, &filesv1.ResolveFileRequest{
		Tenant: "default", DeviceId: "deploy-check-1", ProductClass: "HGW",
		FileType: "1 Firmware Upgrade Image", Version: "0.0.0-none",
	})
	if err != nil {
		return fmt.Errorf("ResolveFile at %s: %w", addr, err)
	}
	if resp.GetFound() {
		return fmt.Errorf("ResolveFile at %s found a file for a version nobody uploaded: %v", addr, resp)
	}
	return nil
}
