//go:build !amd64

package main

func x32Getpid() uintptr    { panic("x32 is an amd64 ABI") }
func int80(uintptr) uintptr { panic("int $0x80 is an x86 ABI") }
