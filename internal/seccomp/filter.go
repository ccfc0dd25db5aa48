package seccomp

import (
	"errors"
	"fmt"

	"golang.org/x/net/bpf"
)

// Offsets in struct seccomp_data (native byte order; both supported ABIs are
// little-endian, so the low half of a 64-bit argument comes first).
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

func argLow(i int) uint32 { return uint32(offArgs + 8*i) }

// Build generates the filter for arch with the given options. The program
// checks the ABI (a foreign one, such as i386's int 0x80 or x32, kills the
// process), answers ENOSYS above the newest known number and for holes in the
// table, and finds the verdict for a known number by binary search over runs
// of numbers that share one, so an allowed call costs about a dozen
// instructions. Its verdict for a call that does not look at arguments is
// constant, which lets the kernel cache allowed calls (Linux 5.11+) and skip
// the program for them entirely.
func Build(arch *Arch, o Options) ([]bpf.RawInstruction, error) {
	if arch == nil {
		return nil, errors.New("seccomp: nil Arch")
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	prog := program(arch, o)
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("seccomp: assembling filter: %w", err)
	}
	if len(raw) > 4096 { // BPF_MAXINSNS
		return nil, fmt.Errorf("seccomp: filter has %d instructions, the kernel takes 4096", len(raw))
	}
	return raw, nil
}

// class is the verdict for one system call number before argument rules.
type class struct {
	ret  uint32   // return value when rule is ruleNone
	rule ruleKind // an argument rule decides instead
	mode modeRule // for ruleMode
}

func classify(a *Arch, o Options, nr int) class {
	name := a.Name(nr)
	switch {
	case name == "", unsupported[name]:
		return class{ret: retErrno | errnoENOSYS}
	case name == "ptrace" && o.TraceMe:
		return class{rule: ruleTraceMe}
	case modeRules[name] != modeRule{}:
		return class{rule: ruleMode, mode: modeRules[name]}
	case rules[name] != ruleNone:
		return class{rule: rules[name]}
	case allowed[name]:
		return class{ret: retAllow}
	}
	return class{ret: o.violation()}
}

// span is a run of consecutive numbers [lo, hi] with one class.
type span struct {
	lo, hi int
	c      class
}

func spans(a *Arch, o Options) []span {
	var out []span
	for nr := 0; nr <= a.max; nr++ {
		c := classify(a, o, nr)
		// A rule block looks at arguments, so it is never merged with a
		// neighbour even when the same rule follows (socket, socketpair
		// are not adjacent anyway).
		if n := len(out); n > 0 && out[n-1].c == c && c.rule == ruleNone {
			out[n-1].hi = nr
			continue
		}
		out = append(out, span{lo: nr, hi: nr, c: c})
	}
	return out
}

func program(a *Arch, o Options) []bpf.Instruction {
	kill := bpf.RetConstant{Val: retKillProcess}
	p := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: a.audit, SkipTrue: 1},
		kill,
		bpf.LoadAbsolute{Off: offNr, Size: 4},
	}
	// Above the table: an x32 number (all of which are above it) kills,
	// anything else is a call this policy has never heard of.
	enosys := bpf.RetConstant{Val: retErrno | errnoENOSYS}
	if a.x32 {
		p = append(p,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(a.max + 1), SkipFalse: 3},
			bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: x32Bit, SkipFalse: 1},
			kill,
			enosys)
	} else {
		p = append(p,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(a.max + 1), SkipFalse: 1},
			enosys)
	}
	return append(p, tree(spans(a, o), o)...)
}

// tree emits a binary search over ss, which covers consecutive numbers; the
// accumulator holds the system call number.
func tree(ss []span, o Options) []bpf.Instruction {
	if len(ss) == 1 {
		return leaf(ss[0].c, o)
	}
	mid := len(ss) / 2
	left, right := tree(ss[:mid], o), tree(ss[mid:], o)
	split := uint32(ss[mid].lo)
	var p []bpf.Instruction
	if len(left) <= 255 {
		p = append(p, bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: split, SkipTrue: uint8(len(left))})
	} else {
		// A conditional jump reaches 255 instructions; go through an
		// unconditional one for a large left subtree.
		p = append(p,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: split, SkipFalse: 1},
			bpf.Jump{Skip: uint32(len(left))})
	}
	p = append(p, left...)
	return append(p, right...)
}

// leaf returns the verdict of one span, running its argument rule if any.
func leaf(c class, o Options) []bpf.Instruction {
	allow := bpf.RetConstant{Val: retAllow}
	deny := bpf.RetConstant{Val: o.violation()}
	switch c.rule {
	case ruleNone:
		return []bpf.Instruction{bpf.RetConstant{Val: c.ret}}
	case ruleClone3:
		// clone3 passes its flags in memory the filter cannot read;
		// ENOSYS makes libc fall back to clone, whose flags it can.
		return []bpf.Instruction{bpf.RetConstant{Val: retErrno | errnoENOSYS}}
	case ruleClone:
		return []bpf.Instruction{
			bpf.LoadAbsolute{Off: argLow(0), Size: 4},
			bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: nsFlags, SkipTrue: 1},
			allow,
			deny,
		}
	case ruleSocket:
		return oneOf(0, socketFamilies, allow, bpf.RetConstant{Val: retErrno | errnoEAFNOSUPPORT})
	case rulePersonality:
		return oneOf(0, personalities, allow, deny)
	case ruleIoctl:
		return oneOf(1, deniedIoctls, deny, allow)
	case ruleTraceMe:
		// request is a long: PTRACE_TRACEME only when all 64 bits are 0.
		return []bpf.Instruction{
			bpf.LoadAbsolute{Off: argLow(0), Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipFalse: 3},
			bpf.LoadAbsolute{Off: argLow(0) + 4, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipFalse: 1},
			allow,
			deny,
		}
	case ruleMode:
		return modeLeaf(c.mode, allow, deny)
	case ruleSeccompFilter:
		// op is an unsigned int.
		return []bpf.Instruction{
			bpf.LoadAbsolute{Off: argLow(0), Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: seccompSetModeFilter, SkipTrue: 1},
			allow,
			bpf.RetConstant{Val: o.install()},
		}
	case rulePrctlSeccomp:
		// option is an int; the mode an unsigned long the kernel compares
		// whole, so looking at its low half reports a superset (a mode
		// with high bits set fails with EINVAL anyway).
		return []bpf.Instruction{
			bpf.LoadAbsolute{Off: argLow(0), Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: prSetSeccomp, SkipFalse: 2},
			bpf.LoadAbsolute{Off: argLow(1), Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: seccompModeFilter, SkipTrue: 1},
			allow,
			bpf.RetConstant{Val: o.install()},
		}
	}
	panic(fmt.Sprintf("seccomp: rule %d has no code", c.rule))
}

// modeLeaf denies a mode with a set-id bit; for the open family only when
// the flags create a file (otherwise the kernel ignores the mode).
func modeLeaf(m modeRule, allow, deny bpf.RetConstant) []bpf.Instruction {
	var p []bpf.Instruction
	if m.flags >= 0 {
		p = append(p,
			bpf.LoadAbsolute{Off: argLow(int(m.flags)), Size: 4},
			bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: createFlags, SkipFalse: 2})
	}
	return append(p,
		bpf.LoadAbsolute{Off: argLow(int(m.mode)), Size: 4},
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: setIDBits, SkipTrue: 1},
		allow,
		deny)
}

// oneOf returns match when the low 32 bits of argument arg equal one of vals,
// otherwise other.
func oneOf(arg int, vals []uint32, match, other bpf.RetConstant) []bpf.Instruction {
	p := []bpf.Instruction{bpf.LoadAbsolute{Off: argLow(arg), Size: 4}}
	for i, v := range vals {
		// Skip the remaining compares and the "other" return.
		p = append(p, bpf.JumpIf{Cond: bpf.JumpEqual, Val: v, SkipTrue: uint8(len(vals) - i)})
	}
	return append(p, other, match)
}
