package wasm

import (
	"bytes"
	"errors"
	"fmt"
)

// memoryMinPages returns the initial size, in 64 KiB pages, of the memory a
// module defines in its memory section (0 when it defines none). Run compares
// it with the memory limit before instantiation, because wazero allocates the
// initial memory unconditionally (see limitAllocator). wazero validates the
// module fully; this reads just enough of the binary format.
func memoryMinPages(bin []byte) (uint64, error) {
	const memorySection = 5
	if len(bin) < 8 || !bytes.Equal(bin[:4], []byte("\x00asm")) {
		return 0, errors.New("not a WebAssembly binary (bad magic)")
	}
	r := &reader{b: bin, i: 8}
	for r.i < len(r.b) {
		id := r.byte()
		size := r.uleb()
		if r.err != nil || size > uint64(len(r.b)-r.i) {
			return 0, errors.New("truncated section")
		}
		end := r.i + int(size)
		if id != memorySection {
			r.i = end
			continue
		}
		var largest uint64
		for n := r.uleb(); n > 0 && r.err == nil; n-- {
			flags := r.byte()
			if mn := r.uleb(); mn > largest {
				largest = mn
			}
			if flags&1 != 0 {
				r.uleb() // maximum
			}
		}
		if r.err != nil || r.i > end {
			return 0, fmt.Errorf("malformed memory section")
		}
		return largest, nil
	}
	return 0, nil
}

type reader struct {
	b   []byte
	i   int
	err error
}

func (r *reader) byte() byte {
	if r.i >= len(r.b) {
		r.err = errors.New("unexpected end")
		return 0
	}
	r.i++
	return r.b[r.i-1]
}

// uleb reads an unsigned LEB128 number of up to 64 bits.
func (r *reader) uleb() uint64 {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
	r.err = errors.New("LEB128 number too long")
	return 0
}
