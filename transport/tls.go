package transport

import (
	"crypto/tls"
	"errors"
)

// tlsConfigs derives the listener's and the dialer's configs from cfg
// without modifying it; both are nil when cfg is nil. The listener requires
// and verifies client certificates against ClientCAs, or RootCAs when
// ClientCAs is nil, also in configs from GetConfigForClient; the dialer
// verifies servers against RootCAs, or ClientCAs when RootCAs is nil.
func tlsConfigs(cfg *tls.Config) (server, client *tls.Config, err error) {
	if cfg == nil {
		return nil, nil, nil
	}
	if len(cfg.Certificates) == 0 && (cfg.GetCertificate == nil || cfg.GetClientCertificate == nil) {
		return nil, nil, errors.New("TLS needs Certificates (or both GetCertificate and GetClientCertificate)")
	}
	if cfg.RootCAs == nil && cfg.ClientCAs == nil {
		return nil, nil, errors.New("TLS needs RootCAs or ClientCAs to verify peers")
	}
	server = requireClientCert(cfg)
	if get := cfg.GetConfigForClient; get != nil {
		server.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			c, err := get(hi)
			if c == nil || err != nil {
				return c, err
			}
			return requireClientCert(c), nil
		}
	}
	client = cfg.Clone()
	if client.RootCAs == nil {
		client.RootCAs = client.ClientCAs
	}
	return server, client, nil
}

// requireClientCert returns a clone of c that requires and verifies client
// certificates.
func requireClientCert(c *tls.Config) *tls.Config {
	c = c.Clone()
	c.ClientAuth = tls.RequireAndVerifyClientCert
	if c.ClientCAs == nil {
		c.ClientCAs = c.RootCAs
	}
	return c
}
