package files

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/recordid"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
	"github.com/fleetacs/fleetacs/services/files/store"
)

// publicServer implements FilesService. Authentication, roles and the
// tenant of every message are checked by the interceptors in front of it
// (package apiauth).
type publicServer struct {
	filesv1.UnimplementedFilesServiceServer
	s *Service
}

func toProto(r store.Record) *filesv1.File {
	return &filesv1.File{Id: r.ID, Tenant: r.Tenant, Name: r.Name, FileType: r.FileType, ProductClasses: r.ProductClasses,
		Oui: r.OUI, Version: r.Version, Size: uint64(r.Size), Sha256: r.SHA256, CreateTime: timestamppb.New(r.CreateTime), Uploader: r.Uploader}
}

// GetFile implements FilesService.
func (p *publicServer) GetFile(ctx context.Context, req *filesv1.GetFileRequest) (*filesv1.GetFileResponse, error) {
	tenant, err := p.s.tenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	if !recordid.Valid(req.GetId()) {
		if req.GetId() == "" {
			return nil, invalidField("id", "must not be empty")
		}
		return nil, notFound(req.GetId())
	}
	r, err := p.s.meta.Get(ctx, tenant, req.GetId())
	if err != nil {
		return nil, p.s.statusOf(ctx, "get file", map[string]string{"file_id": req.GetId()}, err)
	}
	return &filesv1.GetFileResponse{File: toProto(r)}, nil
}

// DeleteFile implements FilesService: the record goes first, so that no
// new download starts, then the bytes. A crash between the two leaves
// bytes without a record, which nothing serves.
func (p *publicServer) DeleteFile(ctx context.Context, req *filesv1.DeleteFileRequest) (*filesv1.DeleteFileResponse, error) {
	tenant, err := p.s.tenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	if !recordid.Valid(req.GetId()) {
		if req.GetId() == "" {
			return nil, invalidField("id", "must not be empty")
		}
		return nil, notFound(req.GetId())
	}
	md := map[string]string{"file_id": req.GetId()}
	if err := p.s.meta.Delete(ctx, tenant, req.GetId()); err != nil {
		return nil, p.s.statusOf(ctx, "delete file", md, err)
	}
	if err := p.s.blobs.Delete(context.WithoutCancel(ctx), tenant, req.GetId()); err != nil {
		p.s.logger.WarnContext(ctx, "file record deleted, its bytes not", "tenant", tenant, "file_id", req.GetId(), "error", err)
	}
	return &filesv1.DeleteFileResponse{}, nil
}

// maxPageSize bounds ListFiles.
const maxPageSize = 1000

// ListFiles implements FilesService. The page token is the last record's
// position (create time in ms, id), bound to the request's filters by a
// hash so that a token is not used with other filters.
func (p *publicServer) ListFiles(ctx context.Context, req *filesv1.ListFilesRequest) (*filesv1.ListFilesResponse, error) {
	tenant, err := p.s.tenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	for field, v := range map[string]string{"file_type": req.GetFileType(), "product_class": req.GetProductClass(), "version": req.GetVersion(), "name": req.GetName()} {
		if len(v) > 256 {
			return nil, invalidField(field, "at most 256 bytes")
		}
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, invalidField("page_size", "must not be negative")
	case size == 0:
		size = 100
	case size > maxPageSize:
		size = maxPageSize
	}
	q := store.Query{Tenant: tenant, FileType: req.GetFileType(), ProductClass: req.GetProductClass(), Version: req.GetVersion(), Name: req.GetName(), Limit: size + 1}
	bind := filterHash(tenant, q)
	if tok := req.GetPageToken(); tok != "" {
		c, err := decodeToken(tok, bind)
		if err != nil {
			return nil, apiError(codes.InvalidArgument, errorsv1.ErrorReason_INVALID_PAGE_TOKEN, "invalid page token", nil)
		}
		q.After = c
	}
	rs, err := p.s.meta.List(ctx, q)
	if err != nil {
		return nil, p.s.statusOf(ctx, "list files", nil, err)
	}
	resp := &filesv1.ListFilesResponse{}
	if len(rs) > size {
		rs = rs[:size]
		last := rs[len(rs)-1]
		resp.NextPageToken = encodeToken(store.Cursor{CreateTime: last.CreateTime, ID: last.ID}, bind)
	}
	for _, r := range rs {
		resp.Files = append(resp.Files, toProto(r))
	}
	return resp, nil
}

func filterHash(tenant string, q store.Query) uint32 {
	// FNV-1a over the filters: a mismatch means the token came from
	// another listing, not a secret.
	h := uint32(2166136261)
	for _, f := range []string{tenant, q.FileType, q.ProductClass, q.Version, q.Name} {
		for i := 0; i < len(f); i++ {
			h = (h ^ uint32(f[i])) * 16777619
		}
		h = (h ^ 0xff) * 16777619
	}
	return h
}

func encodeToken(c store.Cursor, bind uint32) string {
	b := make([]byte, 12, 12+len(c.ID))
	binary.BigEndian.PutUint32(b, bind)
	binary.BigEndian.PutUint64(b[4:], uint64(c.CreateTime.UnixMilli()))
	return base64.RawURLEncoding.EncodeToString(append(b, c.ID...))
}

func decodeToken(tok string, bind uint32) (*store.Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 12+recordid.Length || binary.BigEndian.Uint32(b) != bind || !recordid.Valid(string(b[12:])) {
		return nil, errors.New("bad page token")
	}
	return &store.Cursor{CreateTime: time.UnixMilli(int64(binary.BigEndian.Uint64(b[4:]))).UTC(), ID: string(b[12:])}, nil
}

// UploadFile implements FilesService.
func (p *publicServer) UploadFile(stream filesv1.FilesService_UploadFileServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return invalidField("header", "the upload sent no message")
		}
		return err
	}
	h := first.GetHeader()
	if h == nil {
		return invalidField("header", "the first message must carry the header")
	}
	tenant, err := p.s.tenant(ctx, first.GetTenant())
	if err != nil {
		return err
	}
	next := func() ([]byte, error) {
		m, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if m.GetHeader() != nil || m.GetTenant() != "" {
			return nil, invalidField("chunk", "only the first message carries the tenant and the header")
		}
		if len(m.GetChunk()) > maxChunk {
			return nil, invalidField("chunk", "at most 1 MiB")
		}
		return m.GetChunk(), nil
	}
	f, err := p.s.Upload(ctx, tenant, p.s.deps.Requester(ctx), h, next)
	if err != nil {
		return err
	}
	return stream.SendAndClose(&filesv1.UploadFileResponse{File: f})
}

// maxChunk bounds one chunk message.
const maxChunk = 1 << 20

// defaultURLTTL is CreateDownloadUrl's lifetime when the request names
// none.
const defaultURLTTL = 24 * time.Hour

// CreateDownloadUrl implements FilesService.
func (p *publicServer) CreateDownloadUrl(ctx context.Context, req *filesv1.CreateDownloadUrlRequest) (*filesv1.CreateDownloadUrlResponse, error) {
	tenant, err := p.s.tenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	if !recordid.Valid(req.GetId()) {
		if req.GetId() == "" {
			return nil, invalidField("id", "must not be empty")
		}
		return nil, notFound(req.GetId())
	}
	if d := req.GetDeviceId(); d == "" || len(d) > maxDeviceKey {
		return nil, invalidField("device_id", fmt.Sprintf("1 to %d bytes", maxDeviceKey))
	}
	ttl := defaultURLTTL
	if s := req.GetTtlSeconds(); s > 0 {
		ttl = time.Duration(s) * time.Second
	}
	if ttl > p.s.cfg.MaxURLTTL {
		return nil, invalidField("ttl_seconds", fmt.Sprintf("at most files.max-url-ttl (%s)", p.s.cfg.MaxURLTTL))
	}
	r, err := p.s.meta.Get(ctx, tenant, req.GetId())
	if err != nil {
		return nil, p.s.statusOf(ctx, "create download URL", map[string]string{"file_id": req.GetId()}, err)
	}
	f := toProto(r)
	u, err := p.s.SignFileURL(f, req.GetDeviceId(), ttl)
	if errors.Is(err, errNoBaseURL) {
		return nil, apiError(codes.FailedPrecondition, errorsv1.ErrorReason_INVALID_FIELD, err.Error(), map[string]string{"field": "files.base-url"})
	}
	if err != nil {
		return nil, p.s.statusOf(ctx, "create download URL", nil, err)
	}
	return &filesv1.CreateDownloadUrlResponse{Url: u, ExpireTime: timestamppb.New(p.s.now().Add(ttl).Truncate(time.Second)), File: f}, nil
}
