package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// doTransfer performs a transfer for real (Config.FetchTransfers): a
// download GETs the URL and reads the whole file, an upload PUTs a small
// configuration or log file (docs/protocol.md §5.3: uploads over HTTP use PUT). HTTP
// authentication uses the transfer's Username/Password, answering a Digest
// or Basic challenge. The result is the FaultStruct of the
// TransferComplete: 0, or 9010/9011 (failure), 9012 (authentication), 9013
// (scheme), 9015 (server unreachable), 9016 (file not accessible).
func (s *Simulator) doTransfer(t *transfer) cwmp.FaultStruct {
	u, err := url.Parse(t.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return faultStruct(cwmp.FaultUnsupportedTransferProtocol)
	}
	failure := cwmp.FaultDownloadFailure
	if !t.download {
		failure = cwmp.FaultUploadFailure
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	if t.download {
		return s.download(ctx, t)
	}
	var auth *authState
	for attempt := 0; attempt < 2; attempt++ {
		req, err := s.transferRequest(ctx, t)
		if err != nil {
			return faultStruct(failure)
		}
		if auth != nil {
			req.Header.Set("Authorization", auth.header(req.Method, req.URL.RequestURI()))
		}
		resp, err := s.fileClient().Do(req)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) || strings.Contains(err.Error(), "connect") {
				return faultStruct(cwmp.FaultFileServerUnreachable)
			}
			return faultStruct(failure)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusUnauthorized && auth == nil && t.username != "":
			ch, ok := pickChallenge(parseChallenges(resp.Header.Values("WWW-Authenticate")))
			if !ok {
				return faultStruct(cwmp.FaultTransferAuthFailure)
			}
			auth = &authState{user: t.username, pass: t.password, ch: ch}
			continue
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			return faultStruct(cwmp.FaultTransferAuthFailure)
		case resp.StatusCode == http.StatusNotFound:
			return faultStruct(cwmp.FaultFileAccess)
		case resp.StatusCode/100 != 2:
			return faultStruct(failure)
		case t.download && t.fileSize > 0 && n != int64(t.fileSize):
			return faultStruct(cwmp.FaultDownloadIncomplete)
		}
		return cwmp.FaultStruct{}
	}
	return faultStruct(cwmp.FaultTransferAuthFailure)
}

func (s *Simulator) transferRequest(ctx context.Context, t *transfer) (*http.Request, error) {
	if t.download {
		return http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	}
	body := fmt.Appendf(nil, "# cpesim %s upload %s\n", t.fileType, t.key)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, t.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	return req, nil
}

// fileClient is the HTTP client of transfers; file servers are few and
// transfers rare, so net/http's client is the right tool here.
func (s *Simulator) fileClient() *http.Client {
	s.fileOnce.Do(func() {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = s.client.tlsCfg
		s.files = &http.Client{Transport: tr, Timeout: s.cfg.Timeout}
	})
	return s.files
}

// maxDownloadAttempts bounds the requests of one download: an
// authentication challenge and resumes after cuts.
const maxDownloadAttempts = 6

// download GETs a Download's file as a CPE that resumes does: when the
// connection is cut part way (or Config.FetchInterruptAfter cuts the first
// attempt on purpose), it asks for the rest with "Range: bytes=N-" and,
// when the server gave an ETag, "If-Range" with it, so that a file changed
// in between comes whole (200) instead of spliced. Before the
// TransferComplete reports success it checks the length (the server's,
// and the Download's FileSize when set) and, when the server's ETag is a
// SHA-256 in hexadecimal (FleetACS's /files/ gives one), the checksum:
// 9017 for a short file, 9018 for a corrupted one.
func (s *Simulator) download(ctx context.Context, t *transfer) cwmp.FaultStruct {
	var auth *authState
	hash := sha256.New()
	var got int64
	total := int64(-1)
	etag := ""
	cut := s.cfg.FetchInterruptAfter
	for attempt := 0; attempt < maxDownloadAttempts; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
		if err != nil {
			return faultStruct(cwmp.FaultDownloadFailure)
		}
		if got > 0 {
			req.Header.Set("Range", "bytes="+strconv.FormatInt(got, 10)+"-")
			if etag != "" {
				req.Header.Set("If-Range", etag)
			}
		}
		if auth != nil {
			req.Header.Set("Authorization", auth.header(req.Method, req.URL.RequestURI()))
		}
		resp, err := s.fileClient().Do(req)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) || strings.Contains(err.Error(), "connect") {
				return faultStruct(cwmp.FaultFileServerUnreachable)
			}
			return faultStruct(cwmp.FaultDownloadFailure)
		}
		switch {
		case resp.StatusCode == http.StatusUnauthorized && auth == nil && t.username != "":
			drain(resp)
			ch, ok := pickChallenge(parseChallenges(resp.Header.Values("WWW-Authenticate")))
			if !ok {
				return faultStruct(cwmp.FaultTransferAuthFailure)
			}
			auth = &authState{user: t.username, pass: t.password, ch: ch}
			continue
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			drain(resp)
			return faultStruct(cwmp.FaultTransferAuthFailure)
		case resp.StatusCode == http.StatusNotFound:
			drain(resp)
			return faultStruct(cwmp.FaultFileAccess)
		case resp.StatusCode == http.StatusOK:
			// The whole file: the first attempt, or a resume the server
			// answered in full (no ranges, or the file changed).
			hash.Reset()
			got, total, etag = 0, resp.ContentLength, resp.Header.Get("ETag")
		case resp.StatusCode == http.StatusPartialContent && got > 0:
			start, size, ok := contentRange(resp.Header.Get("Content-Range"))
			if !ok || start != got {
				drain(resp)
				return faultStruct(cwmp.FaultDownloadFailure)
			}
			total = size
		default:
			drain(resp)
			return faultStruct(cwmp.FaultDownloadFailure)
		}
		var body io.Reader = resp.Body
		cutNow := cut > 0 && got == 0
		if cutNow {
			body = io.LimitReader(resp.Body, cut)
		}
		n, err := io.Copy(hash, body)
		got += n
		// Closing an unfinished body drops the connection: the cut.
		resp.Body.Close()
		switch {
		case cutNow && n == cut && got != total:
			cut = 0
			s.stats.resumed.Add(1)
			continue
		case err != nil && got > 0 && ctx.Err() == nil:
			// Cut by the network part way: resume.
			s.stats.resumed.Add(1)
			continue
		case err != nil:
			return faultStruct(cwmp.FaultDownloadFailure)
		}
		switch {
		case total >= 0 && got != total, t.fileSize > 0 && got != int64(t.fileSize):
			return faultStruct(cwmp.FaultDownloadIncomplete)
		}
		if want, ok := sha256ETag(etag); ok && hex.EncodeToString(hash.Sum(nil)) != want {
			return faultStruct(cwmp.FaultFileCorrupted)
		}
		return cwmp.FaultStruct{}
	}
	return faultStruct(cwmp.FaultDownloadIncomplete)
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// contentRange parses "bytes START-END/SIZE".
func contentRange(v string) (start, size int64, ok bool) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, false
	}
	rng, sz, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, false
	}
	first, _, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(first, 10, 64)
	size, err2 := strconv.ParseInt(sz, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || size < start {
		return 0, 0, false
	}
	return start, size, true
}

// sha256ETag returns the checksum a strong ETag of 64 hexadecimal digits
// carries.
func sha256ETag(etag string) (string, bool) {
	v, ok := strings.CutPrefix(etag, `"`)
	if !ok {
		return "", false
	}
	v, ok = strings.CutSuffix(v, `"`)
	if !ok || len(v) != 64 {
		return "", false
	}
	if _, err := hex.DecodeString(v); err != nil {
		return "", false
	}
	return strings.ToLower(v), true
}
