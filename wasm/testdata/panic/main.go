// Command panic panics: the Go runtime prints the panic and exits 2 (a Go
// panic is not a WebAssembly trap).
package main

func main() {
	panic("guest panic")
}
