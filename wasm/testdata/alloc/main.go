// Command alloc allocates memory without end, touching every chunk so that
// nothing can be optimised away.
package main

import "fmt"

var keep [][]byte

func main() {
	for i := 0; ; i++ {
		b := make([]byte, 1<<20)
		for j := range b {
			b[j] = byte(i + j)
		}
		keep = append(keep, b)
		if i%16 == 0 {
			fmt.Println("allocated MiB:", i+1)
		}
	}
}
