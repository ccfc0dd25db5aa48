// Command empty is the baseline of bench/cold.sh: a Go program that does
// nothing, built the same way as cmd/sandbox, so that `sandbox version` is
// compared with the cost of any Go program's start and exit.
package main

func main() {}
