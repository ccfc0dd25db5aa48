#include "textflag.h"

// func x32Getpid() uintptr
TEXT ·x32Getpid(SB), NOSPLIT, $0-8
	MOVQ $0x40000027, AX // __X32_SYSCALL_BIT | 39 (getpid)
	SYSCALL
	MOVQ AX, ret+0(FP)
	RET

// func int80(nr uintptr) uintptr
TEXT ·int80(SB), NOSPLIT, $0-16
	MOVQ nr+0(FP), AX
	INT $0x80
	MOVQ AX, ret+8(FP)
	RET
