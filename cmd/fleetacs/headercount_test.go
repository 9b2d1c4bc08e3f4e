package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// headerCount reads the HTTP/2 frames a gRPC client writes on its
// connections and counts, in the request header blocks (HEADERS and
// CONTINUATION frames), the HPACK bytes and how each header went: as an
// index into the tables, or as a literal (by name, with a decoder that
// follows the client's encoder). For BenchmarkInternalCall: what a
// header with a new value on every call (an unsampled call's
// traceparent) costs on the wire, and whether it evicts the headers that
// repeat on every call (:path, the internal token), which then go out
// as literals again (issue 11, BENCHMARKS.md).
type headerCount struct {
	mu       sync.Mutex
	blocks   int
	bytes    int
	indexed  int
	literals map[string]int
}

// dialer returns a context dialer whose connections headerCount reads.
func (h *headerCount) dialer() func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &countedConn{Conn: c, h: h, dec: hpack.NewDecoder(4096, nil)}, nil
	}
}

// snapshot returns the counts so far.
func (h *headerCount) snapshot() (blocks, bytes, indexed int, literals map[string]int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	literals = make(map[string]int, len(h.literals))
	for k, v := range h.literals {
		literals[k] = v
	}
	return h.blocks, h.bytes, h.indexed, literals
}

// countedConn parses what one connection's client writes (one writer:
// gRPC's loopy writer).
type countedConn struct {
	net.Conn
	h       *headerCount
	dec     *hpack.Decoder
	preface bool
	buf     []byte
	block   []byte
}

const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func (c *countedConn) Write(p []byte) (int, error) {
	c.buf = append(c.buf, p...)
	if !c.preface {
		if len(c.buf) < len(clientPreface) {
			return c.Conn.Write(p)
		}
		c.buf, c.preface = c.buf[len(clientPreface):], true
	}
	for len(c.buf) >= 9 {
		n := int(c.buf[0])<<16 | int(c.buf[1])<<8 | int(c.buf[2])
		if len(c.buf) < 9+n {
			break
		}
		typ, flags, payload := c.buf[3], c.buf[4], c.buf[9:9+n]
		switch typ {
		case 0x1: // HEADERS
			if flags&0x8 != 0 && len(payload) > 0 { // PADDED
				pad := int(payload[0])
				payload = payload[1 : len(payload)-pad]
			}
			if flags&0x20 != 0 { // PRIORITY
				payload = payload[5:]
			}
			c.block = append(c.block[:0], payload...)
		case 0x9: // CONTINUATION
			c.block = append(c.block, payload...)
		}
		if (typ == 0x1 || typ == 0x9) && flags&0x4 != 0 { // END_HEADERS
			c.count(c.block)
		}
		c.buf = c.buf[9+n:]
	}
	c.buf = append([]byte(nil), c.buf...)
	return c.Conn.Write(p)
}

// count classifies the representations of one header block (RFC 7541
// §6) and names each literal after the field the decoder reads for it.
func (c *countedConn) count(block []byte) {
	var kinds []bool // true: literal
	for i := 0; i < len(block); {
		b := block[i]
		switch {
		case b&0x80 != 0: // indexed
			i = skipInt(block, i, 7)
			kinds = append(kinds, false)
		case b&0xc0 == 0x40: // literal, incremental indexing
			i = skipLiteral(block, i, 6)
			kinds = append(kinds, true)
		case b&0xe0 == 0x20: // dynamic table size update
			i = skipInt(block, i, 5)
		default: // literal without indexing, never indexed
			i = skipLiteral(block, i, 4)
			kinds = append(kinds, true)
		}
	}
	fields, err := c.dec.DecodeFull(block)
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	if c.h.literals == nil {
		c.h.literals = map[string]int{}
	}
	c.h.blocks++
	c.h.bytes += len(block)
	if err != nil || len(fields) != len(kinds) {
		c.h.literals["(unparsed)"]++
		return
	}
	for k, lit := range kinds {
		if lit {
			c.h.literals[fields[k].Name]++
		} else {
			c.h.indexed++
		}
	}
}

// skipInt returns the index after the integer with an n-bit prefix at
// block[i].
func skipInt(block []byte, i int, n uint) int {
	if block[i]&(1<<n-1) != 1<<n-1 {
		return i + 1
	}
	i++
	for i < len(block) && block[i]&0x80 != 0 {
		i++
	}
	return i + 1
}

// readInt reads the integer with an n-bit prefix at block[i].
func readInt(block []byte, i int, n uint) (int, int) {
	v := int(block[i] & (1<<n - 1))
	if v != 1<<n-1 {
		return v, i + 1
	}
	i++
	var m uint
	for ; i < len(block); i++ {
		v += int(block[i]&0x7f) << m
		m += 7
		if block[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return v, i
}

// skipLiteral returns the index after the literal field whose name index
// has an n-bit prefix at block[i].
func skipLiteral(block []byte, i int, n uint) int {
	idx, i := readInt(block, i, n)
	if idx == 0 {
		l, j := readInt(block, i, 7)
		i = j + l
	}
	l, j := readInt(block, i, 7)
	return j + l
}

// BenchmarkHPACKHeaders measures HPACK alone, both ends (gRPC's encoder
// and decoder, x/net's hpack), for the request headers of an internal
// call as gRPC writes them (a grpc-timeout with a new value on every
// call, as the processes' calls have): without a traceparent (tracing
// off), with a new one on every call (an unsampled session's calls), and
// with the same one on every call (indexed after the first), and with a
// new one never indexed. ns/op is
// encoding plus decoding one call's headers; hdr-B/op the block's size.
func BenchmarkHPACKHeaders(b *testing.B) {
	paths := []string{"/fleetacs.inventory.v1.InventoryInternalService/GetDeviceForSession",
		"/fleetacs.inventory.v1.InventoryInternalService/RecordSession"}
	// Built before the measurement: 4,096 calls' headers, each with its
	// own grpc-timeout, and 4,096 traceparents.
	calls := make([][]hpack.HeaderField, 4096)
	tps := make([]string, len(calls))
	for i := range calls {
		calls[i] = []hpack.HeaderField{
			{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
			{Name: ":path", Value: paths[i%2]}, {Name: ":authority", Value: "127.0.0.1:40123"},
			{Name: "content-type", Value: "application/grpc"}, {Name: "user-agent", Value: "grpc-go/1.85.0"},
			{Name: "te", Value: "trailers"}, {Name: "grpc-timeout", Value: strconv.Itoa(19999000+i) + "u"},
			{Name: "fleetacs-internal-token", Value: "Yk3Jd0s8fK2mQ9pL7vX1zR4tW6nB5cH8eA0gU3iO2yE="},
		}
		tps[i] = fmt.Sprintf("00-%016x%016x-%016x-00", uint64(i)*0x9e3779b97f4a7c15, uint64(i)+1, uint64(i)*0xc2b2ae3d27d4eb4f+1)
	}
	for _, v := range []struct {
		name string
		tps  []string
		// never: the traceparent as a literal never indexed, which
		// gRPC cannot send (hpack.HeaderField.Sensitive is not
		// reachable through it): what the table's additions and
		// evictions cost, apart from the literal itself.
		never bool
	}{{"traceparent=none", nil, false}, {"traceparent=per-call", tps, false}, {"traceparent=fixed", tps[:1], false},
		{"traceparent=per-call-never-indexed", tps, true}} {
		b.Run(v.name, func(b *testing.B) {
			var buf bytes.Buffer
			enc := hpack.NewEncoder(&buf)
			dec := hpack.NewDecoder(4096, func(hpack.HeaderField) {})
			size := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				buf.Reset()
				for _, f := range calls[i%len(calls)] {
					if err := enc.WriteField(f); err != nil {
						b.Fatal(err)
					}
				}
				if v.tps != nil {
					if err := enc.WriteField(hpack.HeaderField{Name: "traceparent", Value: v.tps[i%len(v.tps)], Sensitive: v.never}); err != nil {
						b.Fatal(err)
					}
				}
				size += buf.Len()
				if _, err := dec.Write(buf.Bytes()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size)/float64(b.N), "hdr-B/op")
		})
	}
}
