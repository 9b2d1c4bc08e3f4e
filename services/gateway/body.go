package gateway

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
)

// Request bodies: the size limit on the wire, Content-Encoding gzip or
// deflate (docs/protocol.md §4.1, §13 input 7), and the size limit after
// decompression, which is what stops a zip bomb: a few kilobytes of gzip
// can expand to gigabytes, so the decoder is read through a limit and
// never to its end.
//
// Bodies are read before the CPE is authenticated, so the limit alone
// still let 4 KiB of gzip cost the gateway 4 MiB of inflating (about 2 ms
// of CPU) per request, from anyone. CWMP's XML compresses about ten to
// forty times; past maxExpansionFloor, a body that expands more than
// maxExpansion times what was read of it is refused (413).
const (
	maxExpansion      = 100
	maxExpansionFloor = 256 << 10
)

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// expansionLimit ends a decompressed stream that grows past
// maxExpansionFloor and past maxExpansion times the compressed bytes read.
type expansionLimit struct {
	r    io.Reader
	wire *countingReader
	out  int64
}

func (e *expansionLimit) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.out += int64(n)
	if e.out > maxExpansionFloor && e.out > maxExpansion*e.wire.n {
		return n, &bodyError{http.StatusRequestEntityTooLarge,
			fmt.Errorf("body expands more than %d times: %d bytes from %d", maxExpansion, e.out, e.wire.n)}
	}
	return n, err
}

type encoding uint8

const (
	encIdentity encoding = iota
	encGzip
	encDeflate
)

// bodyError is a request body the gateway refuses, with its HTTP status.
type bodyError struct {
	status int
	err    error
}

func (e *bodyError) Error() string { return e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// parseEncoding reads Content-Encoding. Only one coding is accepted: CPEs
// that compress use exactly one (ManagementServer.HTTPCompression).
func parseEncoding(h http.Header) (encoding, error) {
	vals := h.Values("Content-Encoding")
	if len(vals) == 0 {
		return encIdentity, nil
	}
	if len(vals) > 1 {
		return 0, &bodyError{http.StatusUnsupportedMediaType, errors.New("several Content-Encoding headers")}
	}
	switch strings.ToLower(strings.TrimSpace(vals[0])) {
	case "", "identity":
		return encIdentity, nil
	case "gzip", "x-gzip":
		return encGzip, nil
	case "deflate":
		return encDeflate, nil
	}
	return 0, &bodyError{http.StatusUnsupportedMediaType, fmt.Errorf("unsupported Content-Encoding %q", vals[0])}
}

func (e encoding) String() string {
	switch e {
	case encGzip:
		return "gzip"
	case encDeflate:
		return "deflate"
	}
	return "identity"
}

var (
	gzipReaders  sync.Pool // *gzip.Reader
	zlibReaders  sync.Pool // io.ReadCloser implementing zlib.Resetter
	flateReaders sync.Pool // io.ReadCloser implementing flate.Resetter
	bufReaders   = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 512) }}
)

// readBody reads the request body within the limits and decompresses it.
// The body returned is empty for an empty POST, whatever the framing
// (Content-Length: 0, a chunked body with no data, or a compressed empty
// stream).
func readBody(w http.ResponseWriter, r *http.Request, enc encoding, maxWire, maxBody int64) ([]byte, error) {
	if r.ContentLength > maxWire {
		return nil, &bodyError{http.StatusRequestEntityTooLarge, fmt.Errorf("body of %d bytes over the limit of %d", r.ContentLength, maxWire)}
	}
	wire := &countingReader{r: http.MaxBytesReader(w, r.Body, maxWire)}
	switch enc {
	case encIdentity:
		if r.ContentLength == 0 {
			return nil, nil
		}
		return readLimited(wire, r.ContentLength, maxBody)
	case encGzip:
		br := bufReaders.Get().(*bufio.Reader)
		br.Reset(wire)
		defer func() { br.Reset(nil); bufReaders.Put(br) }()
		if _, err := br.Peek(1); err == io.EOF {
			return nil, nil // an empty body, whatever its Content-Encoding
		}
		var zr *gzip.Reader
		if v := gzipReaders.Get(); v != nil {
			zr = v.(*gzip.Reader)
			if err := zr.Reset(br); err != nil {
				gzipReaders.Put(zr)
				return nil, decodeError(err)
			}
		} else {
			var err error
			if zr, err = gzip.NewReader(br); err != nil {
				return nil, decodeError(err)
			}
		}
		defer gzipReaders.Put(zr)
		b, err := readLimited(&expansionLimit{r: zr, wire: wire}, -1, maxBody)
		if err != nil {
			return nil, decodeError(err)
		}
		return b, nil
	default: // encDeflate
		br := bufReaders.Get().(*bufio.Reader)
		br.Reset(wire)
		defer func() { br.Reset(nil); bufReaders.Put(br) }()
		head, err := br.Peek(2)
		if len(head) == 0 && err == io.EOF {
			return nil, nil
		}
		// "deflate" means a zlib stream (RFC 9110), but many clients send a
		// raw deflate stream; a zlib header is recognisable by its check
		// bits, so accept both.
		if len(head) == 2 && head[0]&0x0f == 8 && (uint16(head[0])<<8|uint16(head[1]))%31 == 0 {
			var zr io.ReadCloser
			if v := zlibReaders.Get(); v != nil {
				zr = v.(io.ReadCloser)
				if err := zr.(zlib.Resetter).Reset(br, nil); err != nil {
					zlibReaders.Put(zr)
					return nil, decodeError(err)
				}
			} else if zr, err = zlib.NewReader(br); err != nil {
				return nil, decodeError(err)
			}
			defer zlibReaders.Put(zr)
			b, err := readLimited(&expansionLimit{r: zr, wire: wire}, -1, maxBody)
			if err != nil {
				return nil, decodeError(err)
			}
			return b, nil
		}
		var fr io.ReadCloser
		if v := flateReaders.Get(); v != nil {
			fr = v.(io.ReadCloser)
			_ = fr.(flate.Resetter).Reset(br, nil)
		} else {
			fr = flate.NewReader(br)
		}
		defer flateReaders.Put(fr)
		b, err := readLimited(&expansionLimit{r: fr, wire: wire}, -1, maxBody)
		if err != nil {
			return nil, decodeError(err)
		}
		return b, nil
	}
}

// firstBodyChunk is what readLimited allocates before any of a body with
// a known length has arrived; it grows by doubling as the body arrives.
const firstBodyChunk = 64 << 10

// readLimited reads r to its end, failing with 413 past max bytes. size is
// the expected length when known (-1 otherwise), to allocate once.
func readLimited(r io.Reader, size, maxBody int64) ([]byte, error) {
	if size > maxBody {
		return nil, &bodyError{http.StatusRequestEntityTooLarge, fmt.Errorf("body of %d bytes over the limit of %d", size, maxBody)}
	}
	if size >= 0 {
		// Memory for what has arrived, not for what Content-Length
		// promises: allocating the whole declared size at once let any
		// client, before authentication, make the gateway hold 4 MiB per
		// connection for a header of a hundred bytes, until the read
		// timeout. Bodies up to firstBodyChunk (nearly every Inform) are
		// still read into one allocation.
		buf := make([]byte, 0, min(size, firstBodyChunk))
		for int64(len(buf)) < size {
			if len(buf) == cap(buf) {
				buf = slices.Grow(buf, int(min(size, 2*int64(cap(buf))))-len(buf))
			}
			n, err := r.Read(buf[len(buf):int(min(int64(cap(buf)), size))])
			buf = buf[:len(buf)+n]
			if err == io.EOF && int64(len(buf)) < size {
				err = io.ErrUnexpectedEOF
			}
			if err != nil && (err != io.EOF || int64(len(buf)) < size) {
				return nil, classifyReadError(err)
			}
		}
		// A body longer than its Content-Length cannot happen in net/http;
		// nothing more to check.
		return buf, nil
	}
	var buf bytes.Buffer
	// Read one byte past the limit to tell "exactly max" from "more".
	n, err := buf.ReadFrom(io.LimitReader(r, maxBody+1))
	if err != nil {
		return nil, classifyReadError(err)
	}
	if n > maxBody {
		return nil, &bodyError{http.StatusRequestEntityTooLarge, fmt.Errorf("decompressed body over the limit of %d bytes", maxBody)}
	}
	return buf.Bytes(), nil
}

func classifyReadError(err error) error {
	var be *bodyError
	if errors.As(err, &be) {
		return err
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &bodyError{http.StatusRequestEntityTooLarge, fmt.Errorf("body over the limit of %d bytes", mbe.Limit)}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &bodyError{http.StatusBadRequest, fmt.Errorf("read body: %w", err)}
	}
	// A body that stopped arriving: gateway.read-timeout ran out.
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return &bodyError{http.StatusRequestTimeout, fmt.Errorf("read body: %w", err)}
	}
	return fmt.Errorf("read body: %w", err)
}

// decodeError maps a decompression failure: limits stay 413, broken
// streams become 400, connection errors pass through.
func decodeError(err error) error {
	err = classifyReadError(err)
	var be *bodyError
	if errors.As(err, &be) {
		return err
	}
	if errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, zlib.ErrHeader) ||
		errors.Is(err, zlib.ErrChecksum) || errors.Is(err, zlib.ErrDictionary) || errors.Is(err, io.EOF) {
		return &bodyError{http.StatusBadRequest, fmt.Errorf("decompress body: %w", err)}
	}
	var ce flate.CorruptInputError
	if errors.As(err, &ce) {
		return &bodyError{http.StatusBadRequest, fmt.Errorf("decompress body: %w", err)}
	}
	return err
}

var (
	gzipWriters sync.Pool // *gzip.Writer
	zlibWriters sync.Pool // *zlib.Writer
)

// compress encodes a reply body with the coding of the CPE's request, which
// the CPE thereby showed it speaks.
func compress(enc encoding, body []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(body)/3 + 64)
	switch enc {
	case encGzip:
		zw, _ := gzipWriters.Get().(*gzip.Writer)
		if zw == nil {
			zw = gzip.NewWriter(&out)
		} else {
			zw.Reset(&out)
		}
		_, _ = zw.Write(body) // writes to a bytes.Buffer do not fail
		_ = zw.Close()
		gzipWriters.Put(zw)
	case encDeflate:
		zw, _ := zlibWriters.Get().(*zlib.Writer)
		if zw == nil {
			zw = zlib.NewWriter(&out)
		} else {
			zw.Reset(&out)
		}
		_, _ = zw.Write(body)
		_ = zw.Close()
		zlibWriters.Put(zw)
	default:
		return body
	}
	return out.Bytes()
}
