//go:build !linux

package sandbox

func hostChecks() []Check {
	return []Check{{Name: "linux", Error: "subprocess isolation needs Linux", Suggestions: []string{"use inprocess mode"}}}
}
