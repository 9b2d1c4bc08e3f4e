package apiauth

import (
	"context"
	"crypto/x509"
	"net"
	"net/netip"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Calls forwarded by the HTTP/JSON API.
//
// The HTTP/JSON listener (docs/api-http.md) hands every request to the
// process's public gRPC server over an in-memory connection, so that it
// passes exactly the checks of a gRPC call. Two things of the HTTP caller
// would be lost on the way: its address, which the failure limiter counts
// invalid credentials by, and its client certificate, which the in-memory
// connection does not carry. The forwarder sends them as metadata, and the
// server believes that metadata only on connections accepted from a
// ForwarderListener, which nothing outside the process can dial: the same
// keys on a TCP connection are ignored.

// Metadata keys of forwarded calls.
const (
	// ForwardedSourceKey holds the HTTP caller's IP address.
	ForwardedSourceKey = "fleetacs-forwarded-source"
	// ForwardedCertKey holds the DER of the HTTP caller's client
	// certificate, verified by the HTTP listener against the client CA.
	ForwardedCertKey = "fleetacs-forwarded-client-cert-bin"
)

// forwarderAddr is the remote address of a forwarder's connections.
type forwarderAddr struct{}

func (forwarderAddr) Network() string { return "fleetacs-forwarder" }
func (forwarderAddr) String() string  { return "fleetacs-forwarder" }

// ForwarderListener wraps an in-memory listener of the public gRPC server
// that only the process's HTTP/JSON forwarder dials: calls on its
// connections are authenticated with the forwarded source and certificate.
// Never wrap a listener that another process can reach.
func ForwarderListener(ln net.Listener) net.Listener { return forwarderListener{ln} }

type forwarderListener struct{ net.Listener }

func (l forwarderListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return forwarderConn{c}, nil
}

type forwarderConn struct{ net.Conn }

func (forwarderConn) RemoteAddr() net.Addr { return forwarderAddr{} }

// callSource says where a call comes from: the source address the failure
// limiter counts (limited false when there is none), whether it was
// forwarded, and the peer's verified client certificate (or the forwarded
// one), nil without one.
type callSource struct {
	src       netip.Prefix
	limited   bool
	forwarded bool
	cert      *x509.Certificate
}

// sourceOfCall reads a call's source from its peer and, for forwarded
// calls, from md.
func sourceOfCall(ctx context.Context, md metadata.MD) callSource {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return callSource{}
	}
	if _, fwd := pr.Addr.(forwarderAddr); !fwd {
		cs := callSource{}
		cs.src, cs.limited = sourceOf(pr.Addr)
		cs.cert = verifiedLeaf(pr)
		return cs
	}
	cs := callSource{forwarded: true}
	if v := md.Get(ForwardedSourceKey); len(v) == 1 {
		if ip, err := netip.ParseAddr(v[0]); err == nil {
			cs.src, cs.limited = sourceOf(&net.TCPAddr{IP: ip.AsSlice()})
		}
	}
	if v := md.Get(ForwardedCertKey); len(v) == 1 {
		// The HTTP listener verified it. One that does not parse names no
		// principal, so it is refused as invalid credentials.
		cert, err := x509.ParseCertificate([]byte(v[0]))
		if err != nil {
			cert = &x509.Certificate{}
		}
		cs.cert = cert
	}
	return cs
}

// verifiedLeaf is the peer's client certificate when its chain verified.
func verifiedLeaf(pr *peer.Peer) *x509.Certificate {
	if tlsInfo, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(tlsInfo.State.VerifiedChains) > 0 {
		return tlsInfo.State.VerifiedChains[0][0]
	}
	return nil
}
