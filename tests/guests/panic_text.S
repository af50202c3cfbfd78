/* Prints a kernel-style panic line on the console and spins: the VMM ends
 * the run with reason "panic" from the console text alone. */
        .include "lib.inc"
        .globl _start
_start:
        mov $COM1, %dx
        lea msg(%rip), %rsi
        call puts
1:      pause
        jmp 1b
        .section .rodata
msg: .asciz "Kernel panic - not syncing: tiny guest says so\n"
