package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
)

// Listen opens a TCP listener on addr. setting names the flag that chose
// the address, so that a clash says what to change in one line, e.g.
// "listen on :7547 (-gateway.listen-addr): address already in use".
func Listen(ctx context.Context, setting, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, &ListenError{Setting: setting, Addr: addr, Err: err}
	}
	return ln, nil
}

// ListenError is a listener that could not be opened.
type ListenError struct {
	// Setting is the flag that chose the address (without its dash).
	Setting string
	Addr    string
	Err     error
}

func (e *ListenError) Error() string {
	// The system's reason alone: net's own wording repeats the address
	// ("listen tcp :7547: bind: address already in use").
	cause := e.Err
	var se *os.SyscallError
	var oe *net.OpError
	switch {
	case errors.As(cause, &se):
		cause = se.Err
	case errors.As(cause, &oe) && oe.Err != nil:
		cause = oe.Err
	}
	return fmt.Sprintf("listen on %s (-%s): %v", e.Addr, e.Setting, cause)
}

func (e *ListenError) Unwrap() error { return e.Err }
