// Command spin loops forever without calling anything: stopping it needs no
// cooperation from the guest.
package main

var n uint64

func main() {
	for {
		n++
	}
}
