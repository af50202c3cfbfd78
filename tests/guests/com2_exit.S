/* Exercises COM2 and the i8042 shutdown: probes the UART's scratch
 * register and loopback, prints 64 numbered lines on COM2, then
 * "KTSTR_EXIT=3" and an i8042 reset. */
        .include "lib.inc"
        .globl _start
_start:
        /* scratch register round trip */
        mov $COM2+7, %dx
        mov $0xa5, %al
        outb %al, %dx
        xor %eax, %eax
        inb %dx, %al
        cmp $0xa5, %al
        jne broken
        /* loopback: MCR = LOOP|OUT2|RTS -> MSR = DCD|CTS */
        mov $COM2+4, %dx
        mov $0x1a, %al
        outb %al, %dx
        mov $COM2+6, %dx
        inb %dx, %al
        cmp $0x90, %al
        jne broken
        mov $COM2+4, %dx
        mov $0x08, %al
        outb %al, %dx
        /* 64 lines "com2 line 000000NN" */
        xor %ecx, %ecx
1:      mov $COM2, %dx
        lea line(%rip), %rsi
        call puts
        mov %ecx, %eax
        call puthex
        mov $'\n', %al
        call putc
        inc %ecx
        cmp $64, %ecx
        jb 1b
        mov $3, %al
        jmp finish
broken:
        mov $COM1, %dx
        lea uart_bad(%rip), %rsi
        call puts
        mov $1, %al
        jmp finish
        .section .rodata
line:     .asciz "com2 line "
uart_bad: .asciz "16550 register check failed\n"
