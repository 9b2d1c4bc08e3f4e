package sim

import (
	"bytes"
	"sync/atomic"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// An ACS answers every Inform of a run with the same bytes, as a rule:
// the simulator's Informs all carry the ID cpesim-1, so FleetACS's
// InformResponse is one byte string for all of them. irCache remembers the
// last InformResponse decoded and its bytes; a body equal to them byte for
// byte (with the same charset) decodes to the same envelope, so it is
// copied rather than decoded again. Anything else, malformed bodies
// included, goes through cwmp.DecodeWith as before.
type irCache struct {
	last atomic.Pointer[decodedIR]
}

type decodedIR struct {
	body    []byte
	charset string
	env     cwmp.Envelope
	ir      cwmp.InformResponse
}

// decode decodes an ACS message body, from the cache when it is the last
// InformResponse's bytes. The envelope returned is the caller's own.
func (c *irCache) decode(body []byte, charset string) (*cwmp.Envelope, error) {
	if d := c.last.Load(); d != nil && d.charset == charset && bytes.Equal(d.body, body) {
		env, ir := d.env, d.ir
		env.Body = &ir
		return &env, nil
	}
	env, err := cwmp.DecodeWith(body, cwmp.DecodeOptions{Charset: charset})
	if err != nil {
		return nil, err
	}
	if ir, ok := env.Body.(*cwmp.InformResponse); ok {
		d := &decodedIR{body: bytes.Clone(body), charset: charset, env: *env, ir: *ir}
		d.env.Body = nil
		c.last.Store(d)
	}
	return env, nil
}
