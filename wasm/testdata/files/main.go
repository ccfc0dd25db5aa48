// Command files performs file operations named by its arguments and reports
// each result on stdout, so a test can assert what the guest could and could
// not do:
//
//	read PATH           print "read PATH: ok <content>" or "read PATH: err <error>"
//	write PATH TEXT     print "write PATH: ok" or "write PATH: err <error>"
//	symlink OLD NEW     print "symlink NEW: ok" or "symlink NEW: err <error>"
//	mkdir PATH          print "mkdir PATH: ok" or "mkdir PATH: err <error>"
package main

import (
	"fmt"
	"os"
)

func main() {
	args := os.Args[1:]
	for len(args) > 0 {
		switch args[0] {
		case "read":
			b, err := os.ReadFile(args[1])
			report("read", args[1], err, string(b))
			args = args[2:]
		case "write":
			err := os.WriteFile(args[1], []byte(args[2]), 0o644)
			report("write", args[1], err, "")
			args = args[3:]
		case "symlink":
			err := os.Symlink(args[1], args[2])
			report("symlink", args[2], err, "")
			args = args[3:]
		case "mkdir":
			err := os.Mkdir(args[1], 0o755)
			report("mkdir", args[1], err, "")
			args = args[2:]
		default:
			fmt.Fprintln(os.Stderr, "unknown op", args[0])
			os.Exit(2)
		}
	}
}

func report(op, path string, err error, content string) {
	if err != nil {
		fmt.Printf("%s %s: err %v\n", op, path, err)
		return
	}
	fmt.Printf("%s %s: ok %s\n", op, path, content)
}
