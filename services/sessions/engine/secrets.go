package engine

import (
	"fmt"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// Secrets in checkpoints.
//
// The pkg/cwmp state a checkpoint holds keeps the outstanding request
// whole, to send it again when the CPE asks (an empty POST while it is
// outstanding). A request that carries a secret (the connection-request
// password of a SetParameterValues) must not sit in clear in Redis
// (docs/security.md), so the engine checkpoints it as its operation
// redacts it, and a worker that restores the session asks the operation,
// which holds the secret sealed, to rebuild it.

// SecretCaller is an Operation whose calls may carry secrets.
type SecretCaller interface {
	Operation
	// Redact returns the message of call key without its secrets; it
	// must not change m.
	Redact(key string, m cwmp.Message) cwmp.Message
	// Rebuild returns the message of call key as Next returned it,
	// secrets included; ok false when it cannot (the keys that sealed
	// them are not this worker's); m nil and ok true when the call
	// carried no secret, so that the request as checkpointed stands.
	Rebuild(c *Context, key string) (m cwmp.Message, ok bool)
}

// redacted returns st with its outstanding request redacted by the
// operation that asked it, when that operation is a SecretCaller.
func (s *session) redacted(st cwmp.State) cwmp.State {
	o := st.Outstanding
	if o == nil || s.queue == nil {
		return st
	}
	en, key := s.queue.find(o.Request.Key)
	if en == nil {
		return st
	}
	sc, ok := en.Op.(SecretCaller)
	if !ok {
		return st
	}
	cp := *o
	cp.Request.Message = sc.Redact(key, o.Request.Message)
	st.Outstanding = &cp
	return st
}

// rebuildSecrets puts the secrets back into a restored outstanding
// request; an operation that cannot rebuild its request makes the
// checkpoint unusable here, rather than let the request go out again
// without them.
func rebuildSecrets(st *cwmp.State, q *queue, c *Context) error {
	o := st.Outstanding
	if o == nil || q == nil {
		return nil
	}
	en, key := q.find(o.Request.Key)
	if en == nil {
		return nil
	}
	sc, ok := en.Op.(SecretCaller)
	if !ok {
		return nil
	}
	m, ok := sc.Rebuild(c, key)
	if ok && m == nil {
		return nil
	}
	if !ok || m.Method() != o.Request.Message.Method() {
		return fmt.Errorf("operation %s cannot rebuild its outstanding %s", en.ID, o.Request.Message.Method())
	}
	o.Request.Message = m
	return nil
}
