// Command noinit uses the library but forgets sandbox.InitMain: the run must
// say so instead of failing with a bare channel error.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/kb-labs/sandbox"
)

func main() {
	r, err := sandbox.New(sandbox.Config{})
	if err != nil {
		fmt.Println("new:", err)
		os.Exit(2)
	}
	defer r.Close()
	res, err := r.Run(context.Background(), sandbox.Command("/bin/true"), nil, nil)
	if err != nil {
		fmt.Println("run:", err)
		os.Exit(2)
	}
	fmt.Println(res.Status, res.Error.Message)
}
