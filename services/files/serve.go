package files

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/recordid"
	"github.com/fleetacs/fleetacs/services/files/blob"
	"github.com/fleetacs/fleetacs/services/files/store"
)

// DownloadPrefix is the path the gateway hands to DownloadHandler.
const DownloadPrefix = "/files/"

// maxDownloadQuery bounds a download URL's query string.
const maxDownloadQuery = 1024

// maxRanges is the most ranges one request gets; with more, the whole
// file.
const maxRanges = 16

// DownloadHandler serves /files/<tenant>/<file id>[/<name>] to CPEs on the
// CWMP listener (docs/files.md, "Serving CPEs"): GET and HEAD, with Range
// (and If-Range, answering 206 or 416), an ETag of the SHA-256 and
// Content-Length, to a request whose URL carries a valid signature
// (SignURL). Without one, or with one altered or expired: 403 before the
// file is looked up; an unknown file (or one of another tenant, whose
// signature cannot match): 404. A download gets 30s plus its length at
// files.serve-min-rate to complete, at most files.serve-max-time; past
// files.serve-max-concurrent downloads at once, 503 with Retry-After.
func (s *Service) DownloadHandler() http.Handler { return http.HandlerFunc(s.serveDownload) }

func (s *Service) serveDownload(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "private, no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "files are fetched with GET or HEAD", http.StatusMethodNotAllowed)
		return
	}
	if r.ContentLength > 0 || len(r.TransferEncoding) > 0 {
		http.Error(w, "a download request has no body", http.StatusBadRequest)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, DownloadPrefix)
	parts := strings.Split(rest, "/")
	if !ok || len(parts) < 2 || len(parts) > 3 || !apiauth.ValidTenant(parts[0]) || !recordid.Valid(parts[1]) || len(r.URL.RawQuery) > maxDownloadQuery {
		http.NotFound(w, r)
		return
	}
	tenant, id := parts[0], parts[1]
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		http.Error(w, errBadSig.Error(), http.StatusForbidden)
		return
	}
	device, err := s.checkSignature(tenant, id, q)
	if err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	if s.cfg.DeviceAuth == DeviceAuthCredentials {
		auth := s.deviceAuth.Load()
		if auth == nil {
			s.logger.ErrorContext(r.Context(), "files.device-auth=credentials but no gateway in the process checks credentials")
			http.Error(w, "device authentication unavailable", http.StatusServiceUnavailable)
			return
		}
		if !(*auth)(w, r, tenant, device) {
			return
		}
	}
	if !s.ready.Load() {
		h.Set("Retry-After", "10")
		http.Error(w, "file store not started", http.StatusServiceUnavailable)
		return
	}
	select {
	case s.serving <- struct{}{}:
		defer func() { <-s.serving }()
	default:
		h.Set("Retry-After", "30")
		http.Error(w, "too many downloads at once", http.StatusServiceUnavailable)
		return
	}
	ctx := r.Context()
	rec, err := s.meta.Get(ctx, tenant, id)
	if err == nil && len(parts) == 3 && parts[2] != rec.Name {
		err = store.ErrNotFound
	}
	if err != nil {
		s.downloadError(ctx, w, r, tenant, id, err)
		return
	}
	deadline := time.Now().Add(min(s.cfg.ServeMaxTime, 30*time.Second+time.Duration(rec.Size/s.cfg.ServeMinRate)*time.Second))
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	b, err := s.blobs.Open(ctx, tenant, id)
	if err != nil {
		s.downloadError(ctx, w, r, tenant, id, err)
		return
	}
	defer func() { _ = b.Close() }()
	if b.Size() != rec.Size {
		s.logger.ErrorContext(ctx, "file bytes do not have the recorded size", "tenant", tenant, "file_id", id, "size", b.Size(), "recorded", rec.Size)
		http.Error(w, "file unavailable", http.StatusInternalServerError)
		return
	}
	// The whole answer, headers included, within the deadline; the
	// gateway's own write timeout is meant for CWMP exchanges.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(deadline)
	_ = rc.SetReadDeadline(deadline)
	if rg := r.Header.Get("Range"); strings.Count(rg, ",") >= maxRanges {
		// Each range is a seek, and in GridFS a query: a request for many
		// gets the whole file instead, as RFC 9110 lets a server do.
		r.Header.Del("Range")
	}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"`+rec.SHA256+`"`)
	h.Set("Content-Disposition", `attachment; filename="`+rec.Name+`"`)
	s.logger.DebugContext(ctx, "file download", "tenant", tenant, "file_id", id, "device_id", device, "range", r.Header.Get("Range"))
	http.ServeContent(w, r, "", rec.CreateTime, b.Content())
}

func (s *Service) downloadError(ctx context.Context, w http.ResponseWriter, r *http.Request, tenant, id string, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, blob.ErrNotFound):
		http.NotFound(w, r)
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("Retry-After", "10")
		http.Error(w, "file store unavailable", http.StatusServiceUnavailable)
	default:
		s.logger.ErrorContext(ctx, "file download failed", "tenant", tenant, "file_id", id, "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
}
