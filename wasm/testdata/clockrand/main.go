// Command clockrand prints the wall clock, the monotonic clock's view of a
// sleep and a random number, to show what the host chose to give it.
package main

import (
	"crypto/rand"
	"fmt"
	"time"
)

func main() {
	start := time.Now()
	time.Sleep(10 * time.Millisecond)
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	fmt.Printf("now=%d\n", start.UnixNano())
	fmt.Printf("slept=%t\n", time.Since(start) >= 10*time.Millisecond)
	fmt.Printf("rand=%x\n", b)
}
