package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"google.golang.org/protobuf/proto"
)

// Frames on a TCP connection: a 4-byte big-endian length, then that many
// bytes: a 1-byte frame type and its payload. The length counts the type
// byte, so it is at least 1.
const (
	frameHello byte = 1 // wire.Hello; the first frame of every connection
	frameMsg   byte = 2 // raftpb.Message on a message stream
	frameSnap  byte = 3 // raftpb.Message (MsgSnap) opening a snapshot stream
	frameChunk byte = 4 // raw bytes of a snapshot body
	frameEnd   byte = 5 // end of a snapshot body; empty
	frameAck   byte = 6 // wire.SnapshotAck, the receiver's answer

	headerLen = 5 // length prefix and type byte
)

// keepBufMax is the largest read buffer a frameReader keeps between frames;
// larger frames get a buffer of their own that is dropped afterwards.
const keepBufMax = 1 << 20

// frameReader decodes frames from r. It allocates nothing for a frame whose
// length prefix is invalid.
type frameReader struct {
	r     io.Reader
	limit int // largest accepted length prefix
	hdr   [headerLen]byte
	buf   []byte
}

// header reads the next frame header and returns the frame type and the
// payload length; the caller then reads exactly n payload bytes from fr.r.
// A clean end of stream before the header returns io.EOF; a partial header
// returns io.ErrUnexpectedEOF.
func (fr *frameReader) header() (typ byte, n int, err error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:4]); err != nil {
		return 0, 0, err
	}
	size := binary.BigEndian.Uint32(fr.hdr[:4])
	if size == 0 {
		return 0, 0, fmt.Errorf("%w: zero length", ErrBadFrame)
	}
	if uint64(size) > uint64(fr.limit) {
		return 0, 0, ErrFrameTooLarge // unwrapped: allocates nothing
	}
	if _, err := io.ReadFull(fr.r, fr.hdr[4:]); err != nil {
		return 0, 0, noEOF(err)
	}
	return fr.hdr[4], int(size) - 1, nil
}

// next reads a whole frame. The payload is valid until the next call.
func (fr *frameReader) next() (typ byte, payload []byte, err error) {
	typ, n, err := fr.header()
	if err != nil {
		return 0, nil, err
	}
	buf := fr.buf
	if n <= cap(buf) {
		buf = buf[:n]
		if _, err := io.ReadFull(fr.r, buf); err != nil {
			return 0, nil, noEOF(err)
		}
		return typ, buf, nil
	}
	// A large frame's buffer grows with the bytes that arrive, at most
	// doubling: a sender that announces a large frame and goes silent
	// holds at most about twice what it sent (and 64 KiB).
	buf = make([]byte, 0, max(cap(buf), growStep))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(n-len(buf), max(len(buf), growStep)))
		}
		m := min(n, cap(buf))
		if _, err := io.ReadFull(fr.r, buf[len(buf):m]); err != nil {
			return 0, nil, noEOF(err)
		}
		buf = buf[:m]
	}
	if n <= keepBufMax {
		fr.buf = buf
	}
	return typ, buf, nil
}

// growStep is the first allocation for a frame larger than the reader's
// buffer.
const growStep = 64 << 10

// nextProto reads a frame that must have type want and decodes it into m.
func (fr *frameReader) nextProto(want byte, m proto.Message) error {
	typ, payload, err := fr.next()
	if err != nil {
		return err
	}
	if typ != want {
		return fmt.Errorf("%w: frame type %d, want %d", ErrBadFrame, typ, want)
	}
	if err := proto.Unmarshal(payload, m); err != nil {
		return fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	return nil
}

// noEOF turns io.EOF inside a frame into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendFrame appends to dst a frame of type typ holding the encoding of m.
// If the frame's length would exceed limit it returns dst unchanged and
// ErrFrameTooLarge.
func appendFrame(dst []byte, typ byte, m proto.Message, limit int) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, typ)
	dst, err := proto.MarshalOptions{}.MarshalAppend(dst, m)
	if err != nil {
		return dst[:start], err
	}
	size := len(dst) - start - 4
	if size > limit {
		return dst[:start], fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, size, limit)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(size))
	return dst, nil
}

// putHeader writes into hdr the header of a frame of type typ with an
// n-byte payload.
func putHeader(hdr []byte, typ byte, n int) {
	binary.BigEndian.PutUint32(hdr, uint32(n+1))
	hdr[4] = typ
}
