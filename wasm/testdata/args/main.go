// Command args prints its arguments, one per line, as "i=arg".
package main

import (
	"fmt"
	"os"
)

func main() {
	for i, a := range os.Args {
		fmt.Printf("%d=%s\n", i, a)
	}
}
