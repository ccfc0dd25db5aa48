// Command env prints its whole environment, one NAME=VALUE per line.
package main

import (
	"fmt"
	"os"
)

func main() {
	for _, kv := range os.Environ() {
		fmt.Println(kv)
	}
}
