package sandbox

import (
	"github.com/kb-labs/sandbox/internal/mount"
	"github.com/kb-labs/sandbox/internal/spec"
)

// landlockRules derives the Landlock wall from the mount plan: everything
// visible is readable, system directories executable, and writes allowed
// only where a writable mount is (RATIONALE.md, "Landlock rules come from
// the mount plan").
func landlockRules(p *mount.Plan, bestEffort bool) *spec.Landlock {
	ll := &spec.Landlock{BestEffort: bestEffort}
	ll.ReadOnly = append(ll.ReadOnly, "/")
	ll.ReadWrite = append(ll.ReadWrite, "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/shm")
	for _, list := range [][]mount.Mount{p.Base, p.Run} {
		for _, m := range list {
			switch m.Kind {
			case mount.KindTmpfs:
				if !m.ReadOnly && m.Target != "/dev" {
					ll.ReadWrite = append(ll.ReadWrite, m.Target)
				}
			case mount.KindBind, mount.KindRebind:
				if m.ReadOnly {
					ll.ReadExec = append(ll.ReadExec, m.Target)
				} else if m.Dir || !m.Dev {
					// A read-write bind, of a directory or of a single
					// file (device nodes are listed above).
					ll.ReadWrite = append(ll.ReadWrite, m.Target)
				}
			}
		}
	}
	return ll
}
