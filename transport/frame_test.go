package transport

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/concordkv/concord/internal/wire"
)

// testStream returns a hello frame, a message frame, a chunk and an end
// frame, and the offsets where each frame ends.
func testStream(t testing.TB) ([]byte, []int) {
	t.Helper()
	var b []byte
	var ends []int
	var err error
	b, err = appendFrame(b, frameHello, &wire.Hello{From: 1, To: 2, Kind: kindMessages, Version: version}, helloLimit)
	if err != nil {
		t.Fatal(err)
	}
	ends = append(ends, len(b))
	if b, err = appendFrame(b, frameMsg, msg(raftpb.MsgApp, 1, 2, 42), 1024); err != nil {
		t.Fatal(err)
	}
	ends = append(ends, len(b))
	chunk := make([]byte, headerLen+3)
	putHeader(chunk, frameChunk, 3)
	copy(chunk[headerLen:], "abc")
	b = append(b, chunk...)
	ends = append(ends, len(b))
	putHeader(chunk, frameEnd, 0)
	b = append(b, chunk[:headerLen]...)
	ends = append(ends, len(b))
	return b, ends
}

func TestFrameRoundTrip(t *testing.T) {
	data, _ := testStream(t)
	fr := &frameReader{r: bytes.NewReader(data), limit: 1024}
	var hello wire.Hello
	if err := fr.nextProto(frameHello, &hello); err != nil || hello.GetFrom() != 1 || hello.GetTo() != 2 {
		t.Fatalf("hello %v, err %v", &hello, err)
	}
	var m raftpb.Message
	if err := fr.nextProto(frameMsg, &m); err != nil || !proto.Equal(&m, msg(raftpb.MsgApp, 1, 2, 42)) {
		t.Fatalf("message %v, err %v", &m, err)
	}
	if typ, p, err := fr.next(); err != nil || typ != frameChunk || string(p) != "abc" {
		t.Fatalf("chunk %d %q, err %v", typ, p, err)
	}
	if typ, p, err := fr.next(); err != nil || typ != frameEnd || len(p) != 0 {
		t.Fatalf("end %d %q, err %v", typ, p, err)
	}
	if _, _, err := fr.next(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestFrameTruncated(t *testing.T) {
	data, ends := testStream(t)
	for cut := range len(data) {
		fr := &frameReader{r: bytes.NewReader(data[:cut]), limit: 1024}
		var err error
		frames := 0
		for err == nil {
			if _, _, err = fr.next(); err == nil {
				frames++
			}
		}
		want := io.ErrUnexpectedEOF
		if cut == 0 || (frames > 0 && cut == ends[frames-1]) {
			want = io.EOF
		}
		if err != want {
			t.Fatalf("cut at %d: %d frames then %v, want %v", cut, frames, err, want)
		}
	}
}

func TestFrameTooLargeAllocatesNothing(t *testing.T) {
	data := []byte{0xff, 0xff, 0xff, 0xff, frameMsg}
	br := bytes.NewReader(data)
	fr := &frameReader{r: br, limit: 1 << 20}
	var err error
	allocs := testing.AllocsPerRun(100, func() {
		br.Reset(data)
		_, _, err = fr.next()
	})
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
	if allocs != 0 {
		t.Fatalf("%v allocations per oversized frame, want 0", allocs)
	}
}

func TestFrameMalformed(t *testing.T) {
	frame := func(typ byte, payload string) []byte {
		b := make([]byte, headerLen, headerLen+len(payload))
		putHeader(b, typ, len(payload))
		return append(b, payload...)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"zero length", []byte{0, 0, 0, 0, frameMsg}, ErrBadFrame},
		{"limit plus one", []byte{0, 0, 4, 1, frameMsg}, ErrFrameTooLarge},
		{"wrong type", frame(frameChunk, "x"), ErrBadFrame},
		{"garbage payload", frame(frameMsg, "\xff\xff\xff\xff"), ErrBadFrame},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr := &frameReader{r: bytes.NewReader(tc.data), limit: 1024}
			if err := fr.nextProto(frameMsg, new(raftpb.Message)); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestAppendFrameLimit(t *testing.T) {
	m := msg(raftpb.MsgApp, 1, 2, 3)
	m.Entries = []*raftpb.Entry{{Data: make([]byte, 2000)}}
	dst := []byte("keep")
	got, err := appendFrame(dst, frameMsg, m, 1024)
	if !errors.Is(err, ErrFrameTooLarge) || string(got) != "keep" {
		t.Fatalf("appendFrame = %q, %v; want dst unchanged and ErrFrameTooLarge", got, err)
	}
}

func TestFrameReaderDropsLargeBuffers(t *testing.T) {
	big := make([]byte, headerLen+keepBufMax+1)
	putHeader(big, frameChunk, keepBufMax+1)
	small := make([]byte, headerLen+10)
	putHeader(small, frameChunk, 10)
	fr := &frameReader{r: bytes.NewReader(append(small, big...)), limit: 2 * keepBufMax}
	for range 2 {
		if _, _, err := fr.next(); err != nil {
			t.Fatal(err)
		}
	}
	if cap(fr.buf) > keepBufMax {
		t.Fatalf("reader kept a %d-byte buffer", cap(fr.buf))
	}
}

// TestFrameReaderGrowsWithData: a frame announced large but cut short
// costs memory in proportion to the bytes that came, not to its announced
// size: a silent peer cannot pin MaxFrameSize per connection.
func TestFrameReaderGrowsWithData(t *testing.T) {
	const announced = 16 << 20
	in := make([]byte, headerLen+1000)
	putHeader(in, frameMsg, announced)
	fr := &frameReader{r: bytes.NewReader(in), limit: 2 * announced}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, _, err := fr.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("next on a cut frame: %v, want io.ErrUnexpectedEOF", err)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Fatalf("a frame of %d bytes announced, 1000 sent: %d bytes allocated", announced, got)
	}
	// A whole large frame still reads.
	whole := make([]byte, headerLen+3<<20)
	putHeader(whole, frameMsg, 3<<20)
	whole[len(whole)-1] = 7
	fr = &frameReader{r: bytes.NewReader(whole), limit: 2 * announced}
	if _, p, err := fr.next(); err != nil || len(p) != 3<<20 || p[len(p)-1] != 7 {
		t.Fatalf("a 3 MiB frame: %d bytes, %v", len(p), err)
	}
}
