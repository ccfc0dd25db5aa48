//go:build !amd64

package main

// legacySetID: the legacy calls (chmod, open, creat, mkdir, mknod) exist on
// amd64 only.
func legacySetID(dir string, suid, sgid, hiMode uintptr) {}
