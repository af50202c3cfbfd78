/* Loads an empty IDT and divides by zero: #DE -> #DF -> triple fault,
 * which KVM reports as KVM_EXIT_SHUTDOWN. */
        .include "lib.inc"
        .globl _start
_start:
        mov $COM1, %dx
        lea msg(%rip), %rsi
        call puts
        lidt empty_idt(%rip)
        xor %ecx, %ecx
        xor %edx, %edx
        mov $1, %eax
        div %ecx
        jmp .
        .section .rodata
msg: .asciz "triple fault next\n"
        .balign 8
empty_idt: .word 0
        .quad 0
