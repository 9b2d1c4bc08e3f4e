package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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
