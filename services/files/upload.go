package files

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/fleetacs/fleetacs/pkg/recordid"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
	"github.com/fleetacs/fleetacs/services/files/store"
)

// Limits of a file's metadata.
const (
	maxName           = 200
	maxText           = 64
	maxProductClasses = 64
)

// validName: a file name ends the URL a CPE may see, so it is kept to
// letters, digits and "._-+", not starting with a dot.
func validName(s string) bool {
	if s == "" || len(s) > maxName || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.' || c == '+') {
			return false
		}
	}
	return true
}

// printable: 1 to maxText printable ASCII characters.
func printable(s string) bool {
	if s == "" || len(s) > maxText {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// checkHeader validates an upload's header.
func (s *Service) checkHeader(h *filesv1.UploadFileHeader) error {
	if !validName(h.GetName()) {
		return invalidField("header.name", "1 to 200 characters from [A-Za-z0-9._+-], not starting with '.'")
	}
	if !printable(h.GetFileType()) {
		return invalidField("header.file_type", "1 to 64 printable ASCII characters, a CWMP FileType such as \"1 Firmware Upgrade Image\"")
	}
	if len(h.GetProductClasses()) > maxProductClasses {
		return invalidField("header.product_classes", "at most 64")
	}
	for _, pc := range h.GetProductClasses() {
		if !printable(pc) {
			return invalidField("header.product_classes", "each 1 to 64 printable ASCII characters")
		}
	}
	if o := h.GetOui(); o != "" {
		if len(o) != 6 || strings.Trim(strings.ToUpper(o), "0123456789ABCDEF") != "" {
			return invalidField("header.oui", "6 hexadecimal digits")
		}
	}
	if v := h.GetVersion(); v != "" && !printable(v) {
		return invalidField("header.version", "at most 64 printable ASCII characters")
	}
	if strings.HasPrefix(h.GetFileType(), "1 ") && h.GetVersion() == "" {
		return invalidField("header.version", "a firmware image needs the version it installs")
	}
	if sum := h.GetExpectedSha256(); sum != "" {
		if b, err := hex.DecodeString(sum); err != nil || len(b) != sha256.Size {
			return invalidField("header.expected_sha256", "64 hexadecimal digits")
		}
	}
	if h.GetExpectedSize() > uint64(s.cfg.MaxUploadBytes) {
		return apiError(codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD,
			fmt.Sprintf("the file is larger than files.max-upload-bytes (%d)", s.cfg.MaxUploadBytes), map[string]string{"field": "header.expected_size"})
	}
	return nil
}

func mismatch(field, expected, actual string) error {
	return apiError(codes.InvalidArgument, errorsv1.ErrorReason_FILE_CHECKSUM_MISMATCH,
		fmt.Sprintf("the uploaded bytes do not match %s: expected %s, got %s; nothing was kept", field, expected, actual),
		map[string]string{"field": field, "expected": expected, "actual": actual})
}

// Upload stores one file: its bytes come from next (io.EOF after the
// last), within files.upload-timeout overall and files.upload-idle-timeout
// per part. The bytes go to the blob store as they come, hashed on the
// way; only when size and checksum agree with the header is the blob
// committed and the record created. On any failure nothing is kept. The
// gRPC UploadFile and the HTTP PUT upload both end here.
func (s *Service) Upload(ctx context.Context, tenant, uploader string, h *filesv1.UploadFileHeader, next func() ([]byte, error)) (*filesv1.File, error) {
	if err := s.checkHeader(h); err != nil {
		return nil, err
	}
	md := map[string]string{"name": h.GetName()}
	// A name in use fails before any byte is stored; the store's unique
	// index decides races.
	if rs, err := s.meta.List(ctx, store.Query{Tenant: tenant, Name: h.GetName(), Limit: 1}); err != nil {
		return nil, s.statusOf(ctx, "upload file", nil, err)
	} else if len(rs) > 0 {
		md["file_id"] = rs[0].ID
		return nil, s.statusOf(ctx, "upload file", md, store.ErrNameExists)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.UploadTimeout)
	defer cancel()
	now := s.now()
	id := recordid.New(now)
	w, err := s.blobs.Create(ctx, tenant, id)
	if err != nil {
		return nil, s.statusOf(ctx, "upload file", nil, err)
	}
	committed := false
	defer func() {
		if !committed {
			if err := w.Abort(); err != nil {
				s.logger.WarnContext(ctx, "aborted upload not cleaned up", "tenant", tenant, "file_id", id, "error", err)
			}
		}
	}()
	parts := make(chan part)
	go func() {
		for {
			b, err := next()
			select {
			case parts <- part{b, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	hash := sha256.New()
	var size int64
	idle := time.NewTimer(s.cfg.UploadIdleTimeout)
	defer idle.Stop()
read:
	for {
		var pt part
		select {
		case pt = <-parts:
		case <-idle.C:
			return nil, apiError(codes.DeadlineExceeded, errorsv1.ErrorReason_INVALID_FIELD,
				fmt.Sprintf("no part of the upload for %s (files.upload-idle-timeout)", s.cfg.UploadIdleTimeout), map[string]string{"field": "chunk"})
		case <-ctx.Done():
			return nil, s.statusOf(ctx, "upload file", nil, ctx.Err())
		}
		// The idle limit counts the client's silence only: a blob store
		// slow to take a part (an S3 part upload, a GridFS flush) must
		// not make the next part, already waiting, lose to the timer.
		idle.Stop()
		switch {
		case errors.Is(pt.err, io.EOF):
			break read
		case pt.err != nil:
			return nil, s.statusOf(ctx, "upload file", nil, pt.err)
		}
		size += int64(len(pt.b))
		if size > s.cfg.MaxUploadBytes {
			return nil, apiError(codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD,
				fmt.Sprintf("the file is larger than files.max-upload-bytes (%d)", s.cfg.MaxUploadBytes), map[string]string{"field": "chunk"})
		}
		if exp := h.GetExpectedSize(); exp > 0 && uint64(size) > exp {
			return nil, mismatch("expected_size", strconv.FormatUint(exp, 10), "more")
		}
		hash.Write(pt.b)
		if _, err := w.Write(pt.b); err != nil {
			return nil, s.statusOf(ctx, "upload file", nil, err)
		}
		idle.Reset(s.cfg.UploadIdleTimeout)
	}
	if size == 0 {
		return nil, invalidField("chunk", "the file is empty")
	}
	if exp := h.GetExpectedSize(); exp > 0 && uint64(size) != exp {
		return nil, mismatch("expected_size", strconv.FormatUint(exp, 10), strconv.FormatInt(size, 10))
	}
	sum := hex.EncodeToString(hash.Sum(nil))
	if exp := strings.ToLower(h.GetExpectedSha256()); exp != "" && exp != sum {
		return nil, mismatch("expected_sha256", exp, sum)
	}
	committed = true
	if err := w.Commit(); err != nil {
		return nil, s.statusOf(ctx, "upload file", nil, err)
	}
	r := store.Record{Tenant: tenant, ID: id, Name: h.GetName(), FileType: h.GetFileType(), ProductClasses: h.GetProductClasses(),
		OUI: strings.ToUpper(h.GetOui()), Version: h.GetVersion(), Size: size, SHA256: sum, CreateTime: store.Truncate(now), Uploader: uploader}
	if len(r.ProductClasses) == 0 {
		r.ProductClasses = nil
	}
	if err := s.meta.Create(ctx, r); err != nil {
		if derr := s.blobs.Delete(context.WithoutCancel(ctx), tenant, id); derr != nil {
			s.logger.WarnContext(ctx, "bytes of a refused upload not removed", "tenant", tenant, "file_id", id, "error", derr)
		}
		return nil, s.statusOf(ctx, "upload file", md, err)
	}
	s.logger.InfoContext(ctx, "file uploaded", "tenant", tenant, "file_id", id, "name", r.Name, "size", size, "uploader", uploader)
	return toProto(r), nil
}

type part struct {
	b   []byte
	err error
}
