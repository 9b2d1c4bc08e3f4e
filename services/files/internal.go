package files

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
)

// The internal API (FilesInternalService): session workers resolve and
// sign the firmware file a preset asks for (docs/provisioning.md,
// "Firmware").

// maxVersion and maxFileType bound ResolveFile's strings (a preset's
// firmware_version is at most 128 bytes).
const (
	maxVersion  = 128
	maxFileType = 64
)

type internalServer struct {
	filesv1.UnimplementedFilesInternalServiceServer
	s *Service
}

// RegisterInternal registers FilesInternalService on g: the internal
// listener, behind the internal credential.
func (s *Service) RegisterInternal(g grpc.ServiceRegistrar) {
	filesv1.RegisterFilesInternalServiceServer(g, &internalServer{s: s})
}

// ResolveFile implements FilesInternalService.
func (p *internalServer) ResolveFile(ctx context.Context, req *filesv1.ResolveFileRequest) (*filesv1.ResolveFileResponse, error) {
	s := p.s
	if err := s.checkReady(); err != nil {
		return nil, err
	}
	switch {
	case !apiauth.ValidTenant(req.GetTenant()):
		return nil, invalidField("tenant", "1 to 64 characters from [A-Za-z0-9_.-]")
	case req.GetDeviceId() == "" || len(req.GetDeviceId()) > maxDeviceKey:
		return nil, invalidField("device_id", fmt.Sprintf("1 to %d bytes", maxDeviceKey))
	case len(req.GetProductClass()) > maxDeviceKey || (req.GetProductClass() != "" && !printable(req.GetProductClass())):
		return nil, invalidField("product_class", fmt.Sprintf("at most %d printable bytes", maxDeviceKey))
	case req.GetFileType() == "" || len(req.GetFileType()) > maxFileType || !printable(req.GetFileType()):
		return nil, invalidField("file_type", fmt.Sprintf("1 to %d printable bytes", maxFileType))
	case req.GetVersion() == "" || len(req.GetVersion()) > maxVersion || !printable(req.GetVersion()):
		return nil, invalidField("version", fmt.Sprintf("1 to %d printable bytes", maxVersion))
	}
	ttl := defaultURLTTL
	if sec := req.GetTtlSeconds(); sec > 0 {
		ttl = time.Duration(sec) * time.Second
	}
	if ttl > s.cfg.MaxURLTTL {
		return nil, invalidField("ttl_seconds", fmt.Sprintf("at most files.max-url-ttl (%s)", s.cfg.MaxURLTTL))
	}
	f, err := s.Resolve(ctx, req.GetTenant(), req.GetProductClass(), req.GetFileType(), req.GetVersion())
	if errors.Is(err, ErrNoFile) {
		return &filesv1.ResolveFileResponse{}, nil
	}
	if err != nil {
		return nil, s.statusOf(ctx, "resolve file", nil, err)
	}
	u, err := s.SignFileURL(f, req.GetDeviceId(), ttl)
	if errors.Is(err, errNoBaseURL) {
		return nil, apiError(codes.FailedPrecondition, errorsv1.ErrorReason_INVALID_FIELD, err.Error(), map[string]string{"field": "files.base-url"})
	}
	if err != nil {
		return nil, s.statusOf(ctx, "resolve file", nil, err)
	}
	return &filesv1.ResolveFileResponse{Found: true, Url: u, File: f}, nil
}
