package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
)

// DefaultMaxMessageBytes is protocol.maxMessageBytes's default: 16 MiB per line.
const DefaultMaxMessageBytes = 16 << 20

const readChunk = 64 << 10

// Decoder reads newline-delimited protocol messages. It never holds more
// than one line of at most maxMessageBytes: a longer line is reported as
// E_INVALID_MESSAGE as soon as it passes the limit, and the rest of it is
// skipped as it arrives, never buffered. When the reader is a
// *net.UnixConn, reads use recvmsg and every file descriptor the peer
// passes with SCM_RIGHTS is closed at once.
//
// A Decoder is not safe for concurrent use.
type Decoder struct {
	r    io.Reader
	uc   *net.UnixConn
	max  int
	buf  []byte
	oob  []byte
	s, e int // unread bytes are buf[s:e]

	line       []byte // the current line so far
	discarding bool   // inside an oversized line: skip to its newline
	lineNo     int
	off        int64
	lastLen    int // bytes of the last message's line, newline included
	fds        int
	rerr       error

	// idle, when set, is called before each read that starts with no line
	// pending: everything consumed since the last message returned is then
	// blank lines. When it returns false, Next returns ErrOutputLimit. The
	// session counts blank lines with it, which Next never returns.
	idle func() bool
}

// NewDecoder returns a Decoder reading r with a per-line limit of
// maxMessageBytes (DefaultMaxMessageBytes when <= 0).
func NewDecoder(r io.Reader, maxMessageBytes int) *Decoder {
	if maxMessageBytes <= 0 {
		maxMessageBytes = DefaultMaxMessageBytes
	}
	d := &Decoder{r: r, max: maxMessageBytes, buf: make([]byte, readChunk)}
	if uc, ok := r.(*net.UnixConn); ok && canReceiveFDs {
		d.uc = uc
		d.oob = make([]byte, oobSize)
	}
	return d
}

// Offset is the number of bytes consumed so far, oversized and malformed
// lines included.
func (d *Decoder) Offset() int64 { return d.off }

// ClosedFDs is the number of file descriptors received and closed.
func (d *Decoder) ClosedFDs() int { return d.fds }

// Next returns the next message. A line that is not a valid message yields
// an *Error with code E_INVALID_MESSAGE (errors.Is(err, ErrInvalidMessage));
// decoding can continue after it with the next line. Blank lines are
// skipped. A final line without its newline is invalid (it may have been cut
// short). At the end of the stream Next returns io.EOF; a read error (a
// deadline, a closed conn) is returned as is and repeats on later calls.
func (d *Decoder) Next() (Message, error) {
	for {
		if d.s == d.e && d.rerr == nil && d.idle != nil && len(d.line) == 0 && !d.discarding && !d.idle() {
			return nil, ErrOutputLimit
		}
		if d.s == d.e {
			if d.rerr != nil {
				if len(d.line) > 0 && !d.discarding {
					d.line = d.line[:0]
					d.lineNo++
					return nil, d.invalid(errors.New("message not terminated by a newline"))
				}
				d.line, d.discarding = d.line[:0], false
				return nil, d.rerr
			}
			d.fill()
			continue
		}
		chunk := d.buf[d.s:d.e]
		i := bytes.IndexByte(chunk, '\n')
		if d.discarding {
			if i < 0 {
				d.consume(len(chunk))
				continue
			}
			d.consume(i + 1)
			d.discarding = false
			continue
		}
		if i < 0 {
			if len(d.line)+len(chunk) > d.max {
				return nil, d.oversized(len(chunk), false)
			}
			d.line = append(d.line, chunk...)
			d.consume(len(chunk))
			continue
		}
		if len(d.line)+i > d.max {
			return nil, d.oversized(i+1, true)
		}
		full := chunk[:i]
		d.lastLen = len(d.line) + i + 1
		if len(d.line) > 0 {
			d.line = append(d.line, full...)
			full = d.line
		}
		d.consume(i + 1)
		d.lineNo++
		if len(bytes.TrimSpace(full)) == 0 {
			d.resetLine()
			continue
		}
		// Parse copies everything it keeps, so the buffers can be reused.
		m, err := Parse(full)
		d.resetLine()
		if err != nil {
			return nil, d.invalid(err)
		}
		return m, nil
	}
}

func (d *Decoder) consume(n int) {
	d.s += n
	d.off += int64(n)
}

// resetLine drops the line, and its memory once a large message has grown it.
func (d *Decoder) resetLine() {
	if cap(d.line) > 1<<20 {
		d.line = nil
		return
	}
	d.line = d.line[:0]
}

func (d *Decoder) oversized(n int, terminated bool) error {
	d.consume(n)
	d.resetLine()
	d.discarding = !terminated
	d.lineNo++
	return d.invalid(fmt.Errorf("message longer than %d bytes", d.max))
}

func (d *Decoder) invalid(err error) error {
	msg := err.Error()
	var pe *Error
	if errors.As(err, &pe) {
		msg = pe.Message
	}
	return invalidf("line %d: %s", d.lineNo, msg)
}

func (d *Decoder) fill() {
	var n int
	var err error
	if d.uc != nil {
		var oobn int
		n, oobn, _, _, err = d.uc.ReadMsgUnix(d.buf, d.oob)
		if oobn > 0 {
			d.fds += closeRights(d.oob[:oobn])
		}
	} else {
		n, err = d.r.Read(d.buf)
	}
	if n < 0 {
		n = 0 // recvmsg reports -1 with its error
	}
	d.s, d.e = 0, n
	if err == nil && n == 0 {
		// A stream socket reads 0 bytes only at its end; other readers
		// that return (0, nil) are treated the same rather than spun on.
		err = io.EOF
	}
	if err != nil {
		d.rerr = err
	}
}

// skip discards what is buffered, or else reads and discards one chunk,
// without looking for lines; it returns the number of bytes dropped. The
// session drains with it once its verdict is final, so an endless line
// still reaches CountBytes chunk by chunk.
func (d *Decoder) skip() (int, error) {
	if d.s == d.e {
		if d.rerr != nil {
			return 0, d.rerr
		}
		d.fill()
	}
	n := d.e - d.s
	d.consume(n)
	d.resetLine()
	d.discarding = false
	if n == 0 {
		return 0, d.rerr
	}
	return n, nil
}
