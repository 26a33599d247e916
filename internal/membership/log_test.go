package membership

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestLogAdapter: memberlist's "[LEVEL] memberlist: text" lines become
// slog records at that level; a nil logger discards them.
func TestLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	l := newLogLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Printf("[DEBUG] memberlist: Stream connection %s", "from=x")
	l.Printf("[WARN] memberlist: Refuting")
	l.Printf("[ERR] memberlist: Failed")
	l.Printf("no level")
	got := buf.String()
	for _, want := range []string{
		`level=DEBUG msg="Stream connection from=x" component=memberlist`,
		`level=WARN msg=Refuting component=memberlist`,
		`level=ERROR msg=Failed component=memberlist`,
		`level=INFO msg="no level"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
	newLogLogger(nil).Printf("[ERR] memberlist: nobody hears this") // must not panic or print
}
