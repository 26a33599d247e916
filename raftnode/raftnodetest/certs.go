package raftnodetest

import "github.com/concordkv/concord/internal/testca"

// CA is a certificate authority made up for tests: it issues peer
// certificates valid for an hour for 127.0.0.1, as both server and client.
// PeerTLS(name) returns a config for transport.TCPConfig.TLS that trusts
// only this CA.
type CA = testca.CA

// NewCA makes a CA named name.
func NewCA(name string) (*CA, error) { return testca.New(name) }
