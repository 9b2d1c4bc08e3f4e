// Package recordid makes and checks the ids of the records FleetACS creates
// (tasks, files): 26 characters of Crockford's base32 holding 48 bits of
// Unix milliseconds, then 80 random bits (docs/tasks.md, "Records"). They
// sort as their creation times do, and guessing one means guessing 80 bits.
package recordid

import (
	"crypto/rand"
	"encoding/binary"
	"time"
)

// Length is the length of an id.
const Length = 26

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// New returns a new id for a record created at now.
func New(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	// 128 bits, most significant first, in 26 groups of 5 (the first
	// holds the top 3 bits).
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	var out [Length]byte
	for i := Length - 1; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// Valid reports whether s has the form of an id.
func Valid(s string) bool {
	if len(s) != Length || s[0] > '7' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U') {
			return false
		}
	}
	return true
}
