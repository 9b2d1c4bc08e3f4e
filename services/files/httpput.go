package files

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
)

// UploadPath is the path prefix of the HTTP PUT upload.
const UploadPath = "/v1/files/"

// UploadHandlerOptions configures UploadHandler.
type UploadHandlerOptions struct {
	// Metadata is what the HTTP listener vouches for about a request
	// (the caller's address, its client certificate); the Authorization
	// header is added to it.
	Metadata func(*http.Request) metadata.MD
	// MaxBytes bounds the body (files.max-upload-bytes).
	MaxBytes int64
	// IdleTimeout bounds the wait for each part of the body.
	IdleTimeout time.Duration
}

// UploadHandler serves the HTTP upload of the HTTP/JSON API:
//
//	PUT /v1/files/{name}?type=...&version=...[&product_class=...]...[&oui=...][&sha256=...][&tenant=...]
//
// with the file as the body, streamed. It forwards the body to UploadFile
// on client (the public gRPC server, in memory) with the request's
// Authorization header, so that the call passes the same authentication,
// roles and tenant checks as a gRPC call. Content-Length, when sent, is
// the expected size. It answers 201 with the UploadFileResponse in JSON,
// or an error as the rest of the HTTP API does (a google.rpc.Status).
func UploadHandler(client filesv1.FilesServiceClient, opts UploadHandlerOptions) http.Handler {
	return &uploadHandler{client: client, opts: opts}
}

type uploadHandler struct {
	client filesv1.FilesServiceClient
	opts   UploadHandlerOptions
}

// uploadPart is the size of the chunks sent to UploadFile.
const uploadPart = 256 << 10

func (u *uploadHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		w.Header().Set("Allow", http.MethodPut)
		writeStatus(w, http.StatusMethodNotAllowed, status.New(codes.Unimplemented, "files are uploaded with PUT"))
		return
	}
	name, err := url.PathUnescape(strings.TrimPrefix(r.URL.Path, UploadPath))
	if err != nil || name == "" || strings.Contains(name, "/") {
		writeStatus(w, http.StatusNotFound, status.New(codes.NotFound, "PUT /v1/files/{name}"))
		return
	}
	q := r.URL.Query()
	h := &filesv1.UploadFileHeader{
		Name: name, FileType: q.Get("type"), ProductClasses: q["product_class"], Oui: q.Get("oui"),
		Version: q.Get("version"), ExpectedSha256: q.Get("sha256"),
	}
	for k := range q {
		switch k {
		case "type", "product_class", "oui", "version", "sha256", "tenant":
		default:
			writeStatus(w, http.StatusBadRequest, status.New(codes.InvalidArgument, "unknown query parameter "+strconv.Quote(k)))
			return
		}
	}
	if r.ContentLength > u.opts.MaxBytes {
		writeStatus(w, http.StatusRequestEntityTooLarge, status.Newf(codes.InvalidArgument, "the file is larger than %d bytes", u.opts.MaxBytes))
		return
	}
	if r.ContentLength > 0 {
		h.ExpectedSize = uint64(r.ContentLength)
	}
	md := metadata.MD{}
	if u.opts.Metadata != nil {
		md = u.opts.Metadata(r)
	}
	if a := r.Header.Get("Authorization"); a != "" {
		md.Set("authorization", a)
	}
	ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(r.Context(), md))
	defer cancel()
	stream, err := u.client.UploadFile(ctx)
	if err != nil {
		writeGRPCError(w, err)
		return
	}
	rc := http.NewResponseController(w)
	body := http.MaxBytesReader(w, r.Body, u.opts.MaxBytes)
	buf := make([]byte, uploadPart)
	sendErr := stream.Send(&filesv1.UploadFileRequest{Tenant: q.Get("tenant"), Part: &filesv1.UploadFileRequest_Header{Header: h}})
	for sendErr == nil {
		_ = rc.SetReadDeadline(time.Now().Add(u.opts.IdleTimeout))
		n, rerr := io.ReadFull(body, buf)
		if n > 0 {
			sendErr = stream.Send(&filesv1.UploadFileRequest{Part: &filesv1.UploadFileRequest_Chunk{Chunk: buf[:n]}})
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			// The server must not keep a part of the file: the stream
			// is cancelled, not closed.
			cancel()
			var tooBig *http.MaxBytesError
			if errors.As(rerr, &tooBig) {
				writeStatus(w, http.StatusRequestEntityTooLarge, status.Newf(codes.InvalidArgument, "the file is larger than %d bytes", u.opts.MaxBytes))
				return
			}
			writeStatus(w, http.StatusRequestTimeout, status.New(codes.InvalidArgument, "the body was not received in time"))
			return
		}
	}
	_ = rc.SetReadDeadline(time.Time{})
	// A failed Send means the server ended the call: its status comes
	// with CloseAndRecv.
	resp, err := stream.CloseAndRecv()
	if err != nil {
		writeGRPCError(w, err)
		return
	}
	b, err := protojson.Marshal(resp)
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, status.New(codes.Internal, "internal error"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(b)
}

func writeGRPCError(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	writeStatus(w, runtime.HTTPStatusFromCode(st.Code()), st)
}

// writeStatus answers with a google.rpc.Status body, as the HTTP API does
// for errors of gRPC calls.
func writeStatus(w http.ResponseWriter, code int, st *status.Status) {
	b, err := protojson.Marshal(st.Proto())
	if err != nil {
		b = []byte(`{"code":13,"message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	if code >= 400 {
		// The rest of the body may still be coming: the connection is
		// not reused.
		w.Header().Set("Connection", "close")
	}
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
