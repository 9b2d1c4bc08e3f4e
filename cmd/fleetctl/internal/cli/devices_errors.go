package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// apiError is a failed call to the API, described for an operator: what
// went wrong in words, then the catalogue reason (proto/errors.md) when the
// server sent one, so that a script's log can be matched on it.
type apiError struct {
	desc string
	err  error
}

func (e *apiError) Error() string { return e.desc }
func (e *apiError) Unwrap() error { return e.err }

// rpcError describes an error of a call to c: reasons from the catalogue
// first, then the status code, as proto/errors.md tells clients to branch.
func (c *conn) rpcError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return &apiError{desc: err.Error(), err: err}
	}
	var (
		info  *errdetails.ErrorInfo
		bad   *errdetails.BadRequest
		retry *errdetails.RetryInfo
	)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.BadRequest:
			bad = d
		case *errdetails.RetryInfo:
			retry = d
		}
	}
	if info != nil && info.GetReason() != "" {
		return &apiError{desc: c.reasonText(info, st, bad, retry) + " (" + info.GetReason() + ")", err: err}
	}
	return &apiError{desc: c.codeText(st, bad), err: err}
}

// reasonText words a catalogued reason. An unknown reason, from a newer
// server, is worded by its code.
func (c *conn) reasonText(info *errdetails.ErrorInfo, st *status.Status, bad *errdetails.BadRequest, retry *errdetails.RetryInfo) string {
	md := info.GetMetadata()
	switch errorsv1.ErrorReason(errorsv1.ErrorReason_value[info.GetReason()]) {
	case errorsv1.ErrorReason_CREDENTIALS_MISSING:
		if c.tokenNotSent != "" {
			return "no credentials: " + c.tokenNotSent + "; give -token or set " + envToken +
				" (e.g. " + envToken + "=$(cat " + localPath("admin.token") + ") when this is its server)"
		}
		return "no credentials: give -token or set " + envToken + " (an admin can create one with " +
			"\"fleetctl tokens create\"), or run fleetctl in the directory holding data/admin.token, " +
			"which fleetacs writes at its first start"
	case errorsv1.ErrorReason_CREDENTIALS_INVALID:
		switch {
		case c.tokenFrom == "" && c.clientCert:
			return "credentials rejected: the client certificate names no FleetACS role (see docs/security.md)"
		case c.tokenFrom == "":
			return "credentials rejected (malformed, unknown, revoked or expired)"
		}
		return "credentials rejected (malformed, unknown, revoked or expired): the token from " + c.tokenFrom +
			"; is " + c.addr + " the server that issued it?"
	case errorsv1.ErrorReason_ROLE_FORBIDDEN:
		if md["role"] != "" && md["method"] != "" {
			return fmt.Sprintf("permission denied: role %s may not call %s", quoteIfNeeded(md["role"]), quoteIfNeeded(md["method"]))
		}
		return "permission denied: the credentials' role lacks this method"
	case errorsv1.ErrorReason_TENANT_FORBIDDEN:
		if md["tenant"] != "" {
			return "permission denied: the credentials do not cover tenant " + strconv.Quote(md["tenant"])
		}
		return "permission denied: the credentials do not cover this tenant"
	case errorsv1.ErrorReason_TENANT_REQUIRED:
		return "tenant required: give -tenant"
	case errorsv1.ErrorReason_INVALID_FIELD:
		return withDetail("invalid request", st, bad)
	case errorsv1.ErrorReason_INVALID_PAGE_TOKEN:
		return "page token rejected (expired, or the listing changed): run the command again"
	case errorsv1.ErrorReason_INVALID_FILTER:
		return withDetail("invalid filter", st, bad)
	case errorsv1.ErrorReason_INVALID_TAG:
		if md["tag"] != "" {
			return "invalid tag " + strconv.Quote(md["tag"])
		}
		return withDetail("invalid tag", st, bad)
	case errorsv1.ErrorReason_DEVICE_NOT_FOUND:
		return "not found"
	case errorsv1.ErrorReason_TOKEN_NOT_FOUND:
		return "no such token among those the credentials may manage"
	case errorsv1.ErrorReason_RATE_LIMITED:
		if d := retry.GetRetryDelay(); d != nil && d.AsDuration() > 0 {
			return "rate limited: retry in " + d.AsDuration().Round(time.Millisecond).String()
		}
		return "rate limited: retry later"
	case errorsv1.ErrorReason_STORE_UNAVAILABLE:
		return "the server's store is unavailable: retry later"
	case errorsv1.ErrorReason_INTERNAL_ERROR:
		if md["trace_id"] != "" {
			return "internal server error, trace_id " + quoteIfNeeded(md["trace_id"])
		}
		return "internal server error"
	}
	return withDetail(codeWords(st.Code()), st, bad)
}

// codeText words an error without a reason: gRPC's own (the server down, a
// deadline) or one from a server that predates the catalogue.
func (c *conn) codeText(st *status.Status, bad *errdetails.BadRequest) string {
	switch st.Code() {
	case codes.Unavailable:
		return "cannot reach the server at " + c.addr + ": " + transportCause(st.Message()) + c.tlsHint(st.Message())
	case codes.DeadlineExceeded:
		return fmt.Sprintf("no answer from the server at %s within %s (-timeout)", c.addr, c.timeout)
	case codes.Canceled:
		return "interrupted"
	case codes.Unimplemented:
		return withDetail("not implemented by the server at "+c.addr, st, nil)
	}
	return withDetail(codeWords(st.Code()), st, bad)
}

// tlsHint says what to do when the client and the server disagree on TLS,
// or the server's certificate is not trusted.
func (c *conn) tlsHint(msg string) string {
	switch {
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return " (the server does not serve TLS: start fleetacs with -server.grpc-tls-cert-file and " +
			"-server.grpc-tls-key-file, or give -tls=false if the network to it is trusted, as the token then crosses it in clear)"
	case strings.Contains(msg, "certificate signed by unknown authority"), strings.Contains(msg, "certificate is not valid for"):
		return " (give -ca-file with the CA that signed the server's certificate)"
	case !c.useTLS && (strings.Contains(msg, "server preface") || strings.Contains(msg, "connection reset by peer") ||
		strings.Contains(msg, "EOF")):
		return " (if the server serves TLS, give -tls, and -ca-file when its CA is private)"
	}
	return ""
}

// withDetail appends the field violations, else the server's message.
func withDetail(what string, st *status.Status, bad *errdetails.BadRequest) string {
	var parts []string
	for _, v := range bad.GetFieldViolations() {
		switch {
		case v.GetField() != "" && v.GetDescription() != "":
			parts = append(parts, v.GetField()+": "+v.GetDescription())
		case v.GetDescription() != "":
			parts = append(parts, v.GetDescription())
		case v.GetField() != "":
			parts = append(parts, v.GetField())
		}
	}
	if len(parts) > 0 {
		return what + ": " + strings.Join(parts, "; ")
	}
	if m := strings.TrimSpace(st.Message()); m != "" {
		return what + ": " + m
	}
	return what
}

// transportCause digs the cause out of gRPC's wording of a failed
// connection, e.g. `connection error: desc = "transport: Error while
// dialing: dial tcp 127.0.0.1:9300: connect: connection refused"`.
func transportCause(msg string) string {
	if _, q, ok := strings.Cut(msg, "desc = "); ok {
		if u, err := strconv.Unquote(q); err == nil {
			msg = u
		}
	}
	msg = strings.TrimPrefix(msg, "transport: ")
	msg = strings.TrimPrefix(msg, "Error while dialing: ")
	msg = strings.TrimPrefix(msg, "error while dialing: ")
	if msg == "" {
		return "unavailable"
	}
	return msg
}

// codeWords is a status code as words for a sentence.
func codeWords(c codes.Code) string {
	switch c {
	case codes.Unknown:
		return "unknown error"
	case codes.InvalidArgument:
		return "invalid argument"
	case codes.NotFound:
		return "not found"
	case codes.AlreadyExists:
		return "already exists"
	case codes.PermissionDenied:
		return "permission denied"
	case codes.ResourceExhausted:
		return "resource exhausted"
	case codes.FailedPrecondition:
		return "failed precondition"
	case codes.Aborted:
		return "aborted"
	case codes.OutOfRange:
		return "out of range"
	case codes.Unimplemented:
		return "not implemented by the server"
	case codes.Internal:
		return "internal server error"
	case codes.Unavailable:
		return "unavailable"
	case codes.DataLoss:
		return "data loss"
	case codes.Unauthenticated:
		return "unauthenticated"
	case codes.DeadlineExceeded:
		return "deadline exceeded"
	case codes.Canceled:
		return "cancelled"
	}
	return "error " + c.String()
}
