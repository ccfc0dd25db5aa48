// Package bootstrap embeds the in-sandbox halves of the handler protocol:
// the programs node and python3 run to load a file handler, call its
// export, and speak the protocol on fd 3 (see package protocol for the
// contract). The engine mounts them read-only inside the sandbox.
package bootstrap

import _ "embed"

// File names the engine should give the bootstraps inside the sandbox
// (node treats a .mjs file as an ES module whatever package.json says).
const (
	NodeFile   = "node.mjs"
	PythonFile = "python.py"
)

var (
	//go:embed node.mjs
	node string
	//go:embed python.py
	python string
)

// Node returns the Node.js bootstrap (an ES module); a fresh copy each call.
func Node() []byte { return []byte(node) }

// Python returns the Python 3 bootstrap; a fresh copy each call.
func Python() []byte { return []byte(python) }
