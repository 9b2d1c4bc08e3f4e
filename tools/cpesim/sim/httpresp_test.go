package sim

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// responseCorpus holds responses an ACS may send, plain and not, and
// malformed ones. The trailing "NEXT" is the start of whatever follows on
// the connection: both readers must leave it unread.
var responseCorpus = []string{
	// Plain: the fast path's.
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nSet-Cookie: session=A; Path=/\r\nDate: Mon, 07 Dec 2026 05:15:15 GMT\r\n\r\nhelloNEXT",
	"HTTP/1.1 204 No Content\r\nDate: Mon, 07 Dec 2026 05:15:15 GMT\r\n\r\nNEXT",
	"HTTP/1.1 204 No Content\r\n\r\nNEXT",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nNEXT",
	"HTTP/1.1 200\r\nContent-Length: 3\r\n\r\nabcNEXT",
	"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nCONNECTION: Close\r\n\r\nabcNEXT",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabcNEXT",
	"HTTP/1.1 200 OK\r\nContent-Length:3\r\nLocation:\t spaced \t\r\nRetry-After:\r\nContent-Type: text/xml\r\n\r\nabcNEXT",
	"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"acs\", nonce=\"n1\", qop=\"auth\"\r\nWWW-Authenticate: Basic realm=\"acs\"\r\nContent-Length: 0\r\n\r\nNEXT",
	"HTTP/1.1 307 Temporary Redirect\r\nLocation: /acs2\r\nContent-Length: 0\r\n\r\nNEXT",
	"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusyNEXT",
	"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2; Max-Age=0\r\nContent-Length: 1\r\n\r\nxNEXT",
	"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\nzzNEXT",
	"HTTP/1.1 599 Odd\r\nContent-Length: 0\r\n\r\nNEXT",
	// Outside the fast path, still well formed.
	"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabcNEXT",
	"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabcNEXT",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nNEXT",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n1\r\na\r\n0\r\nX-T: v\r\n\r\nNEXT",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nNEXT",
	"HTTP/1.1 200 OK\r\n\r\nuntil the end",
	"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
	"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\nNEXT",
	"HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\nNEXT",
	"HTTP/1.1 304 Not Modified\r\n\r\nNEXT",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nNEXT",
	"HTTP/1.1 200 OK\nContent-Length: 3\n\nabcNEXT",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Folded: a\r\n b\r\n\r\nabcNEXT",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabcNEXT",
	"HTTP/1.1 200 OK\r\nContent-Length: 03\r\n\r\nabcNEXT",
	"HTTP/1.1 200 OK\r\nContent-Length:  3  \r\n\r\nabcNEXT",
	"HTTP/1.1 200 OK\r\nConnection: close, x\r\nContent-Length: 3\r\n\r\nabcNEXT",
	"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabcNEXT",
	"HTTP/1.1 200 Caf\xc3\xa9\r\nContent-Length: 3\r\n\r\nabcNEXT",
	"HTTP/1.1 200 OK\r\nLocation: caf\xc3\xa9\r\nContent-Length: 3\r\n\r\nabcNEXT",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab",
	// Malformed.
	"",
	"HTTP/1.1",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n",
	"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/9 200 OK\r\nContent-Length: 0\r\n\r\n",
	"FTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 3x\r\n\r\nabc",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
	"HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\n: empty name\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\n leading: space\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-Ctl: a\x01b\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-Del: a\x7fb\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-Cr: a\rb\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
}

// headersCompared are the fields the simulator reads from responses.
var headersCompared = readFields

// referenceResponse is what the simulator read before readResponse:
// http.ReadResponse and the whole body.
func referenceResponse(raw string) (resp *response, rest string, err error) {
	br := bufio.NewReaderSize(strings.NewReader(raw), 8<<10)
	hr, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, "", err
	}
	body, err := io.ReadAll(hr.Body)
	if err != nil {
		return nil, "", err
	}
	left, _ := io.ReadAll(br)
	return &response{status: hr.StatusCode, header: headerFromHTTP(hr.Header), body: body, close: hr.Close}, string(left), nil
}

// compareWithReference checks readResponse against http.ReadResponse on
// one raw response: both fail, or both read the same status, header
// values, body, close flag, and leave the same bytes unread.
func compareWithReference(t *testing.T, raw string) (fast bool) {
	t.Helper()
	want, wantRest, wantErr := referenceResponse(raw)

	br := bufio.NewReaderSize(strings.NewReader(raw), 8<<10)
	br.Peek(1)
	var buf bytes.Buffer
	got, fast, err := readResponseFast(br, &buf)
	if !fast {
		// Declined: nothing may have been consumed.
		if br.Buffered() != min(len(raw), 8<<10) {
			t.Fatalf("%q: the declining fast path consumed bytes", raw)
		}
		br = bufio.NewReaderSize(strings.NewReader(raw), 8<<10)
		got, err = readResponse(br, &buf)
	}
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%q (fast %v): error %v, http.ReadResponse's %v", raw, fast, err, wantErr)
	}
	if err != nil {
		return fast
	}
	rest, _ := io.ReadAll(br)
	if got.status != want.status || got.close != want.close || !bytes.Equal(got.body, want.body) || string(rest) != wantRest {
		t.Fatalf("%q (fast %v): status %d close %v body %q rest %q; http.ReadResponse: %d %v %q %q",
			raw, fast, got.status, got.close, got.body, rest, want.status, want.close, want.body, wantRest)
	}
	for _, name := range headersCompared {
		for _, n := range []string{name, strings.ToLower(name)} {
			if g, w := got.header.Values(n), want.header.Values(n); !slices.Equal(g, w) || got.header.Get(n) != want.header.Get(n) {
				t.Fatalf("%q (fast %v): %s: %q, http.ReadResponse %q", raw, fast, n, g, w)
			}
		}
	}
	return fast
}

// TestReadResponseMatchesNetHTTP: the simulator's response reader agrees
// with http.ReadResponse on plain, unusual and malformed responses, and
// takes the plain ones itself.
func TestReadResponseMatchesNetHTTP(t *testing.T) {
	var fast []string
	for _, raw := range responseCorpus {
		if compareWithReference(t, raw) {
			fast = append(fast, raw)
		}
	}
	// The 14 plain ones, one with spaces around its Content-Length, and
	// the two whose body is cut short (the fast path reports the error).
	want := append(slices.Clip(responseCorpus[:14]),
		"HTTP/1.1 200 OK\r\nContent-Length:  3  \r\n\r\nabcNEXT",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
	if !slices.Equal(fast, want) {
		t.Errorf("the fast path took\n%q\nwant\n%q", fast, want)
	}
}

// TestReadResponseErrors: a connection closed before or inside a
// response fails with the errors http.ReadResponse gave.
func TestReadResponseErrors(t *testing.T) {
	var buf bytes.Buffer
	for _, tc := range []struct{ raw, want string }{
		{"", "read response: unexpected EOF"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "read response body: unexpected EOF"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "read response body: unexpected EOF"},
	} {
		_, err := readResponse(bufio.NewReader(strings.NewReader(tc.raw)), &buf)
		if err == nil || err.Error() != tc.want || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%q: error %v, want %s", tc.raw, err, tc.want)
		}
	}
}

// TestResponseBodyBound: a body over maxResponseBody is refused with an
// error, not allocated: announced by the fast path's Content-Length
// (nothing of it is read), sent chunked to the slow path, or inflated
// from a small compressed body.
func TestResponseBodyBound(t *testing.T) {
	var buf bytes.Buffer
	huge := "HTTP/1.1 200 OK\r\nContent-Length: 999999999999999\r\n\r\n"
	if _, err := readResponse(bufio.NewReader(strings.NewReader(huge)), &buf); !errors.Is(err, errResponseTooLarge) {
		t.Errorf("Content-Length 999999999999999: %v, want %v", err, errResponseTooLarge)
	}
	// Chunked: the slow path, fed one chunk after another until the
	// bound is passed.
	chunk := strings.Repeat("x", 1<<20)
	chunked := io.MultiReader(strings.NewReader("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
		&repeatReader{s: "100000\r\n" + chunk + "\r\n", n: maxResponseBody>>20 + 2}, strings.NewReader("0\r\n\r\n"))
	if _, err := readResponse(bufio.NewReader(chunked), &buf); !errors.Is(err, errResponseTooLarge) {
		t.Errorf("chunked body over the bound: %v, want %v", err, errResponseTooLarge)
	}
	// At the bound exactly, it is read.
	ok := "HTTP/1.1 200 OK\r\nContent-Length: 16777216\r\n\r\n" + strings.Repeat("y", maxResponseBody)
	if r, err := readResponse(bufio.NewReader(strings.NewReader(ok)), &buf); err != nil || len(r.body) != maxResponseBody {
		t.Errorf("body at the bound: %v", err)
	}
	var z bytes.Buffer
	if err := gzipBody(&z, make([]byte, maxResponseBody+1)); err != nil {
		t.Fatal(err)
	}
	if _, err := inflate(z.Bytes(), true); !errors.Is(err, errResponseTooLarge) {
		t.Errorf("gzip body inflating past the bound (%d bytes compressed): %v, want %v", z.Len(), err, errResponseTooLarge)
	}
}

// repeatReader reads s n times.
type repeatReader struct {
	s   string
	n   int
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	c := copy(p, r.s[r.off:])
	if r.off += c; r.off == len(r.s) {
		r.off, r.n = 0, r.n-1
	}
	return c, nil
}

// TestReadResponseSplitArrival: a response whose header arrives in pieces
// is read whole (by http.ReadResponse, as the fast path needs it
// buffered).
func TestReadResponseSplitArrival(t *testing.T) {
	raw := "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nSet-Cookie: s=1\r\n\r\nabc"
	br := bufio.NewReader(io.MultiReader(strings.NewReader(raw[:20]), strings.NewReader(raw[20:])))
	var buf bytes.Buffer
	resp, err := readResponse(br, &buf)
	if err != nil || resp.status != 200 || string(resp.body) != "abc" || resp.header.Get("set-cookie") != "s=1" {
		t.Fatalf("resp %+v, err %v", resp, err)
	}
}

// FuzzReadResponse compares readResponse with http.ReadResponse on any
// input (the corpus above are its seeds).
func FuzzReadResponse(f *testing.F) {
	for _, raw := range responseCorpus {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if len(raw) > 4<<10 {
			return
		}
		compareWithReference(t, raw)
	})
}

// TestContentCharset: the recognised spellings give what
// mime.ParseMediaType gives, and the others go to it.
func TestContentCharset(t *testing.T) {
	for _, ct := range []string{"", "text/xml", "text/xml; charset=utf-8", `text/xml; charset="utf-8"`,
		`text/xml; charset="ISO-8859-1"`, "text/xml;charset=utf-8", "application/soap+xml; charset=UTF-8",
		"text/xml; charset=", "text/xml; charset", "garbage;;", `text/xml; charset="utf-8`} {
		want := ""
		if _, params, err := mime.ParseMediaType(ct); err == nil {
			want = params["charset"]
		}
		if got := contentCharset(ct); got != want {
			t.Errorf("contentCharset(%q) = %q, mime.ParseMediaType's %q", ct, got, want)
		}
	}
}

// TestSessionCookies: the Cookie header follows every Set-Cookie, its
// cached line rebuilt after each change: set, replaced, a second one
// added, one expired by Max-Age, one by a past Expires, unparsable lines
// ignored.
func TestSessionCookies(t *testing.T) {
	ss := &session{}
	steps := []struct {
		setCookie []string
		want      string
	}{
		{[]string{"session=A; Path=/"}, "session=A"},
		{nil, "session=A"},
		{[]string{"session=B"}, "session=B"},
		{[]string{"lb=x; HttpOnly", "not a cookie"}, "session=B; lb=x"},
		{[]string{"session=B; Max-Age=-1"}, "lb=x"},
		{[]string{"lb=y; Expires=Thu, 01 Jan 1970 00:00:00 GMT"}, ""},
		{[]string{"a=1", "b=2"}, "a=1; b=2"},
	}
	for i, st := range steps {
		var h respHeader
		for _, v := range st.setCookie {
			h = append(h, hdrField{"Set-Cookie", v}, hdrField{"Content-Type", "text/xml"})
		}
		ss.storeCookies(h)
		got := ""
		if len(ss.cookies) > 0 {
			got = ss.cookieHeader()
		}
		if got != st.want {
			t.Errorf("step %d: Cookie %q, want %q", i, got, st.want)
		}
	}
}

var setCookieCorpus = []string{
	"session=ZBUWNZ64DC37DBHAWBIHBALHIY; Path=/",
	"session=A", "session=", "a=b=c", "s=a+b/c~d.e_f-g",
	"s=A; HttpOnly; Secure; SameSite=Strict; Path=/acs; Domain=example.com",
	"s=A; Max-Age=0", "s=A; max-age=-1", "s=A; Max-Age=60", "s=A; MAX-AGE=x",
	"s=A; Expires=Thu, 01 Jan 1970 00:00:00 GMT", "s=A; expires=Fri, 01 Jan 2100 00:00:00 GMT", "s=A; Expires=garbage",
	` s=A`, `s =A`, `s= A`, `s=A `, `s="quoted"`, `s="half`, "s=a b", "s=a,b", `s=a\b`, "s=caf\xc3\xa9",
	"", ";", "=A", "noequals", "bad name=A", "s;=A", "s=A;;", "s=A; Path", "s=A; =x",
	"s=A; Max-Age=5; Max-Age=0", "s=A; Ma\u017f-Age=0", "\ts=A\t",
}

// TestParseSetCookieMatchesNetHTTP: the session's Set-Cookie reading
// agrees with http.ParseSetCookie on name, value, expiry and refusal.
func TestParseSetCookieMatchesNetHTTP(t *testing.T) {
	for _, line := range setCookieCorpus {
		compareSetCookie(t, line)
	}
}

func compareSetCookie(t *testing.T, line string) {
	t.Helper()
	now := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	name, value, expired, ok := parseSetCookie(line, now)
	c, err := http.ParseSetCookie(line)
	if ok != (err == nil) {
		t.Fatalf("%q: ok %v, http.ParseSetCookie's error %v", line, ok, err)
	}
	if err != nil {
		return
	}
	wantExpired := c.MaxAge < 0 || (!c.Expires.IsZero() && c.Expires.Before(now))
	if name != c.Name || value != c.Value || expired != wantExpired {
		t.Fatalf("%q: %q=%q expired %v; http.ParseSetCookie: %q=%q expired %v", line, name, value, expired, c.Name, c.Value, wantExpired)
	}
}

// FuzzParseSetCookie compares parseSetCookie with http.ParseSetCookie on
// any line.
func FuzzParseSetCookie(f *testing.F) {
	for _, line := range setCookieCorpus {
		f.Add(line)
	}
	f.Fuzz(func(t *testing.T, line string) { compareSetCookie(t, line) })
}
