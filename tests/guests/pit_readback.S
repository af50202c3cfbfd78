/* The i8254 read-back a kernel does for entropy without RDRAND/TSC
 * (arch/x86/lib/kaslr.c): OUT 0x43 <- 0xC2 (read back status and count of
 * counter 0), then three INs from 0x40: status, count low, count high.
 * The kernel loops while status bit 6 (null count) is set, so a counter
 * that no BIOS programmed hangs it there. Prints on COM1:
 *   "pit: status=000000SS count=0000CCCC" twice (the count must move)
 * and exits 0. */
        .include "lib.inc"
        .globl _start
_start:
        call sample
        mov $20000, %ecx
1:      loop 1b                         /* let the counter run */
        call sample
        mov $0, %al
        jmp finish

sample:
        mov $0xc2, %al
        outb %al, $0x43
        inb $0x40, %al
        movzbl %al, %r8d                /* status */
        inb $0x40, %al
        movzbl %al, %r9d                /* count low */
        inb $0x40, %al
        movzbl %al, %eax
        shl $8, %eax
        or %eax, %r9d                   /* count */
        mov $COM1, %dx
        lea t_status(%rip), %rsi
        call puts
        mov %r8d, %eax
        call puthex
        lea t_count(%rip), %rsi
        call puts
        mov %r9d, %eax
        call puthex
        mov $'\n', %al
        call putc
        ret

        .section .rodata
t_status: .asciz "pit: status="
t_count:  .asciz " count="
