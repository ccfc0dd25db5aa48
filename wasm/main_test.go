package wasm

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// guests are the test modules built from testdata/<name>/main.go.
var guests = []string{"args", "env", "files", "alloc", "spin", "exit3", "panic", "trap", "hello", "clockrand", "cat"}

// modDir holds <name>.wasm for every guest, and hello-native (the host
// build of testdata/hello, the benchmarks' os/exec baseline).
var modDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "wasm-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	modDir = dir
	err = buildGuests(dir)
	code := 1
	if err == nil {
		code = m.Run()
	} else {
		fmt.Fprintln(os.Stderr, "building test modules:", err)
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// buildGuests compiles the guests once per test process, in one go command.
func buildGuests(dir string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, g := range guests {
		args = append(args, "./testdata/"+g)
	}
	cmd := exec.Command(goBin, args...)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	for _, g := range guests {
		if err := os.Rename(filepath.Join(dir, g), filepath.Join(dir, g+".wasm")); err != nil {
			return err
		}
	}
	cmd = exec.Command(goBin, "build", "-o", filepath.Join(dir, "hello-native"), "./testdata/hello")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

func guest(name string) string { return filepath.Join(modDir, name+".wasm") }

// tinyModule emits a WebAssembly binary with one exported function "_start"
// of type () -> () whose body is body (without the final "end"), and, when
// memPages > 0, a memory of that initial size.
func tinyModule(body []byte, memPages uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x00asm\x01\x00\x00\x00")
	section := func(id byte, content []byte) {
		b.WriteByte(id)
		b.Write(uleb(uint64(len(content))))
		b.Write(content)
	}
	section(1, []byte{1, 0x60, 0, 0}) // types: one func () -> ()
	section(3, []byte{1, 0})          // functions: one, of type 0
	if memPages > 0 {
		section(5, append([]byte{1, 0}, uleb(uint64(memPages))...)) // memory: min only
	}
	section(7, append([]byte{1, 6}, append([]byte("_start"), 0, 0)...)) // export func 0
	code := append([]byte{0}, body...)                                  // no locals
	code = append(code, 0x0b)                                           // end
	section(10, append(append([]byte{1}, uleb(uint64(len(code)))...), code...))
	return b.Bytes()
}

// Bodies for tinyModule.
var (
	bodyNop         = []byte{}
	bodyUnreachable = []byte{0x00}
	bodyLoop        = []byte{0x03, 0x40, 0x0c, 0x00, 0x0b} // loop br 0 end
	// grow memory by one page until refused, then trap: a guest that ignores
	// the refusal's cause.
	bodyGrowForever = []byte{0x03, 0x40, 0x41, 0x01, 0x40, 0x00, 0x41, 0x7f, 0x47, 0x0d, 0x00, 0x0b, 0x00}
)

func uleb(v uint64) []byte {
	var out []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			out = append(out, c|0x80)
			continue
		}
		return append(out, c)
	}
}
