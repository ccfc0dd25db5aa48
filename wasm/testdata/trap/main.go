// Command trap reads far outside its linear memory, which WebAssembly turns
// into an "out of bounds memory access" trap.
package main

import (
	"fmt"
	"unsafe"
)

func main() {
	p := (*byte)(unsafe.Pointer(uintptr(0xFFFF_FFF0)))
	fmt.Println(*p)
}
