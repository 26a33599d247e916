package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// cell is one system's measurement in one row, or why there is none.
type cell struct {
	ok       bool
	opsPerS  float64
	p50, p99 time.Duration
	note     string // shown in place of ops/s when !ok
}

// row is one line of the table.
type row struct {
	nodes    int
	workload string
	cells    map[string]cell // by system name
}

// columns lists the systems in table order; the ratio is columns[0]/columns[1].
var columns = []string{"concord", "etcd"}

func writeTable(w io.Writer, rows []row) {
	header := []string{"nodes", "workload"}
	for _, sys := range columns {
		header = append(header, sys+" ops/s", sys+" p50", sys+" p99")
	}
	header = append(header, columns[0]+"/"+columns[1])
	right := make([]bool, len(header))
	for i := 2; i < len(right); i++ {
		right[i] = true
	}
	right[0] = true

	lines := [][]string{header}
	for _, r := range rows {
		line := []string{strconv.Itoa(r.nodes), r.workload}
		for _, sys := range columns {
			c, ok := r.cells[sys]
			switch {
			case !ok:
				line = append(line, "-", "-", "-")
			case !c.ok:
				line = append(line, c.note, "n/a", "n/a")
			default:
				line = append(line, fmtRate(c.opsPerS), fmtLatency(c.p50), fmtLatency(c.p99))
			}
		}
		a, b := r.cells[columns[0]], r.cells[columns[1]]
		switch {
		case a.ok && b.ok && b.opsPerS > 0:
			line = append(line, fmt.Sprintf("%.2fx", a.opsPerS/b.opsPerS))
		case a.note != "" || b.note != "":
			line = append(line, "n/a")
		default:
			line = append(line, "-")
		}
		lines = append(lines, line)
	}

	widths := make([]int, len(header))
	for _, l := range lines {
		for i, s := range l {
			widths[i] = max(widths[i], len(s))
		}
	}
	for li, l := range lines {
		var b strings.Builder
		b.WriteString("|")
		for i, s := range l {
			pad := strings.Repeat(" ", widths[i]-len(s))
			if right[i] {
				b.WriteString(" " + pad + s + " |")
			} else {
				b.WriteString(" " + s + pad + " |")
			}
		}
		fmt.Fprintln(w, b.String())
		if li == 0 {
			b.Reset()
			b.WriteString("|")
			for i := range l {
				dash := strings.Repeat("-", widths[i])
				if right[i] {
					b.WriteString(" " + dash[1:] + ": |")
				} else {
					b.WriteString(" " + dash + " |")
				}
			}
			fmt.Fprintln(w, b.String())
		}
	}
}

// fmtRate formats an ops/s figure with thousands separators: 25,812.
func fmtRate(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	return b.String()
}

// fmtLatency formats a latency in milliseconds with three significant digits
// at most: 0.412ms, 4.12ms, 41.2ms, 412ms.
func fmtLatency(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 1:
		return fmt.Sprintf("%.3fms", ms)
	case ms < 10:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 100:
		return fmt.Sprintf("%.1fms", ms)
	default:
		return fmt.Sprintf("%.0fms", ms)
	}
}
