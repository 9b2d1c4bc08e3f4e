package apiauth

import (
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"sync"

	"google.golang.org/grpc"
)

// PublicTLSConfig is the optional TLS of the public gRPC listener: flags
// "server.grpc-tls-<name>". With a client CA, clients may authenticate with
// certificates it signed (see certPrincipal) instead of tokens; clients
// without a certificate are still served, and authenticate with tokens.
type PublicTLSConfig struct {
	CertFile     string
	KeyFile      string
	ClientCAFile string
}

// RegisterFlags registers the flags with their defaults.
func (c *PublicTLSConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.CertFile, "server.grpc-tls-cert-file", "", "PEM certificate of the public gRPC listener; with -server.grpc-tls-key-file it serves TLS only (empty: plaintext, fine on loopback, not across a network)")
	fs.StringVar(&c.KeyFile, "server.grpc-tls-key-file", "", "PEM private key of -server.grpc-tls-cert-file")
	fs.StringVar(&c.ClientCAFile, "server.grpc-tls-client-ca-file", "", "PEM CA certificates whose client certificates authenticate public API callers (mutual TLS; the certificate names its role and tenants, see docs/security.md)")
}

// Validate reports settings that cannot work.
func (c *PublicTLSConfig) Validate() error {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("server.grpc-tls-cert-file and server.grpc-tls-key-file go together")
	}
	if c.ClientCAFile != "" && c.CertFile == "" {
		return errors.New("server.grpc-tls-client-ca-file needs server.grpc-tls-cert-file")
	}
	return nil
}

// Enabled reports whether the public listener serves TLS.
func (c *PublicTLSConfig) Enabled() bool { return c.CertFile != "" }

// PublicTLS loads a PublicTLSConfig when its server handshakes first,
// or when Load is called.
type PublicTLS struct {
	cfg  PublicTLSConfig
	once sync.Once
	tls  *tls.Config
	err  error
}

// NewPublicTLS does no I/O.
func NewPublicTLS(cfg PublicTLSConfig) *PublicTLS { return &PublicTLS{cfg: cfg} }

// Load reads the certificate, key and client CA.
func (p *PublicTLS) Load() error {
	p.once.Do(func() {
		cert, err := tls.LoadX509KeyPair(p.cfg.CertFile, p.cfg.KeyFile)
		if err != nil {
			p.err = err
			return
		}
		c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}}
		if p.cfg.ClientCAFile != "" {
			pool, err := loadCAs(p.cfg.ClientCAFile)
			if err != nil {
				p.err = err
				return
			}
			c.ClientCAs, c.ClientAuth = pool, tls.VerifyClientCertIfGiven
		}
		p.tls = c
	})
	return p.err
}

// ServerOptions serve TLS when configured; nothing otherwise.
func (p *PublicTLS) ServerOptions() []grpc.ServerOption {
	if !p.cfg.Enabled() {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(&lazyTLS{server: true, get: func() (*tls.Config, error) {
		if err := p.Load(); err != nil {
			return nil, err
		}
		return p.tls, nil
	}})}
}

// HTTPConfig is the TLS of the public HTTP/JSON listener (docs/api-http.md):
// the certificate and client CA of the gRPC listener, offering HTTP/2 and
// HTTP/1.1.
func (p *PublicTLS) HTTPConfig() (*tls.Config, error) {
	if err := p.Load(); err != nil {
		return nil, err
	}
	c := p.tls.Clone()
	c.NextProtos = []string{"h2", "http/1.1"}
	return c, nil
}

// ForwarderClientConfig is the TLS of the HTTP/JSON forwarder's in-memory
// connection to the public gRPC server, which serves TLS on it as on every
// listener: it accepts exactly the server's own certificate, whatever names
// it holds.
func (p *PublicTLS) ForwarderClientConfig() (*tls.Config, error) {
	if err := p.Load(); err != nil {
		return nil, err
	}
	own := p.tls.Certificates[0].Certificate[0]
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"},
		// Verification by name and chain is replaced by VerifyConnection,
		// which pins the certificate this process loaded.
		InsecureSkipVerify: true, //nolint:gosec // pinned below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, own) {
				return errors.New("the in-memory public gRPC server presented another certificate")
			}
			return nil
		},
	}, nil
}
