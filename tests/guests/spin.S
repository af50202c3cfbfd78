/* Its first instruction is an OUT (the start-to-first-exit benchmark
 * measures up to it), then it prints a line and spins forever: ended by
 * --timeout or a signal. */
        .include "lib.inc"
        .globl _start
_start:
        outb %al, $0x80         /* POST port: the first exit */
        mov $COM1, %dx
        lea msg(%rip), %rsi
        call puts
1:      pause
        jmp 1b
        .section .rodata
msg: .asciz "spinning\n"
