package main

// x32Getpid calls getpid through the x32 ABI (number | __X32_SYSCALL_BIT).
func x32Getpid() uintptr

// int80 makes a 32-bit (i386 ABI) system call through int $0x80.
func int80(nr uintptr) uintptr
