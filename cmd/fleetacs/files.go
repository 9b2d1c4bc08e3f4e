package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/lifecycle"
	"github.com/fleetacs/fleetacs/services/files"
)

// buildFiles builds the files service (docs/files.md): its API on the
// public gRPC server (and so the HTTP/JSON API, whose PUT upload forwards
// to it), and the /files/ download handler the gateway mounts when it runs
// in the same process.
func buildFiles(a *app) (lifecycle.Service, error) {
	scfg := a.cfg.filesStore
	scfg.Metrics = a.clients
	if scfg.Store == files.StoreSQLite && !a.flagSet["files.sqlite-path"] {
		scfg.SQLitePath = a.dataPath("files.db")
	}
	if scfg.BlobStore() == files.BlobDisk && !a.flagSet["files.blob-dir"] {
		scfg.BlobDir = a.dataPath("files")
	}
	cfg := a.cfg.files
	if scfg.Store == files.StoreMongoDB && cfg.URLKeyFile == "" {
		return nil, errors.New("files.url-key-file is required with files.store=mongodb: every process serving or signing /files/ URLs needs the same keys")
	}
	meta, blobs, closer, err := scfg.Open()
	if err != nil {
		return nil, fmt.Errorf("files store config: %w", err)
	}
	if scfg.BlobStore() == files.BlobS3 {
		for _, f := range []string{scfg.S3.AccessKeyFile, scfg.S3.SecretKeyFile} {
			if f != "" {
				warnIfShared(a.logger, "S3 key file", f)
			}
		}
	}
	keys := files.URLKeyFile(a.dataPath("files-url.key"), true)
	if cfg.URLKeyFile != "" {
		keys = files.URLKeyFile(cfg.URLKeyFile, false)
	}
	svc, err := files.New(cfg, files.Deps{
		Store: meta, Blobs: blobs, URLKeys: keys, Close: closer,
		CallerTenants: apiauth.CallerTenants,
		Requester: func(ctx context.Context) string {
			p, _ := apiauth.FromContext(ctx)
			return p.ID
		},
		Logger: a.logger.With("component", "files"),
	})
	if err != nil {
		return nil, err
	}
	svc.RegisterPublic(a.shared.public.registrar)
	// Session workers resolve presets' firmware files (docs/provisioning.md).
	svc.RegisterInternal(a.shared.internal.registrar)
	a.tokensFromInventory()
	a.shared.files = svc
	return a.keyedService("files URL key file", cfg.URLKeyFile, svc.Start, svc.Run), nil
}

// filesHandler is the gateway's /files/ handler: the files service's when
// it runs in the process, else none.
func filesHandler(svc *files.Service) http.Handler {
	if svc == nil {
		return nil
	}
	return svc.DownloadHandler()
}
