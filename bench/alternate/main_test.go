package main

import (
	"slices"
	"testing"
)

func TestSubjects(t *testing.T) {
	subs := subjects([]string{"empty=/tmp/e", "---", "/bin/echo", "a=b", "---", "---", "./x=y/z", "v"})
	type want struct {
		name string
		argv []string
	}
	wants := []want{
		{"empty", []string{"/tmp/e"}},
		{"/bin/echo a=b", []string{"/bin/echo", "a=b"}},
		{"./x=y/z v", []string{"./x=y/z", "v"}},
	}
	if len(subs) != len(wants) {
		t.Fatalf("got %d commands, want %d", len(subs), len(wants))
	}
	for i, w := range wants {
		if subs[i].name != w.name || !slices.Equal(subs[i].argv, w.argv) {
			t.Errorf("command %d: got %q %q, want %q %q", i, subs[i].name, subs[i].argv, w.name, w.argv)
		}
	}
}
