// Package testnet hands tests loopback addresses that stay free.
//
// A port taken from "127.0.0.1:0" and released comes from the kernel's
// ephemeral range, the same range outgoing connections draw their local
// ports from: between the release and the node's own bind, another
// connection in this or a parallel test process can take it (CI saw
// "bind: address already in use" for a gossip port). FreeAddrs picks ports
// below that range instead, from a per-process random start, and checks
// that TCP and UDP (memberlist binds both) are free on each.
package testnet

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

const (
	low  = 10000 // lowest port handed out
	span = 20000 // ports [low, low+span) are used; below the usual ephemeral range
)

var (
	mu   sync.Mutex
	next = -1 // offset into the span of the next port to try; -1 before first use
)

// FreeAddrs returns n distinct loopback addresses ("127.0.0.1:port") whose
// TCP and UDP ports were free when checked and lie outside the ephemeral
// range. Ports are never handed out twice by one process.
func FreeAddrs(n int) ([]string, error) {
	mu.Lock()
	defer mu.Unlock()
	if next < 0 {
		next = rand.IntN(span)
	}
	lo, hi := ephemeralRange()
	var out []string
	for tries := 0; len(out) < n; tries++ {
		if tries >= span {
			return nil, errors.New("testnet: no free port left")
		}
		port := low + next
		next = (next + 1) % span
		if port >= lo && port <= hi {
			continue
		}
		if free(port) {
			out = append(out, "127.0.0.1:"+strconv.Itoa(port))
		}
	}
	return out, nil
}

// free reports whether port can be bound on loopback for TCP and UDP.
func free(port int) bool {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	pc.Close()
	return true
}

// ephemeralRange returns Linux's local port range, or IANA's default.
func ephemeralRange() (int, int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			lo, err1 := strconv.Atoi(f[0])
			hi, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil {
				return lo, hi
			}
		}
	}
	return 49152, 65535
}
