// Package leaktest holds the goleak options concord's tests share.
package leaktest

import "go.uber.org/goleak"

// Options are the goroutines goleak may find after a test: badger's cache
// goroutines end a moment after Close.
func Options() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*defaultPolicy[...]).processItems"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2.(*Cache[...]).processItems"),
	}
}
