/* Reads the first byte of every page of the initramfs, last page first, and
 * reports an FNV-1a 32-bit hash of those bytes in that order on COM1:
 *   "pages: n=XXXXXXXX fnv=XXXXXXXX"
 * Cheap for a large initramfs, so a test can make one big enough that, under
 * lazy image loading, the guest reaches its last pages long before the
 * background fill (which goes forwards) does: they are filled on demand.
 * Exits 0; exits 1 with "initrd: none" when there is none. */
        .include "lib.inc"
        .globl _start
_start:
        call initrd                     /* %r8 addr, %r9 size, %dx COM1 */
        lea 4095(%r9), %rbx
        shr $12, %rbx                   /* pages */
        mov %rbx, %r11
        mov $0x811c9dc5, %r10d          /* FNV-1a offset basis */
1:      dec %rbx
        mov %rbx, %rcx
        shl $12, %rcx
        movzbl (%r8,%rcx), %eax
        xor %eax, %r10d
        imul $0x01000193, %r10d, %r10d  /* FNV prime */
        test %rbx, %rbx
        jnz 1b
        lea t_n(%rip), %rsi
        call puts
        mov %r11d, %eax
        call puthex
        lea t_fnv(%rip), %rsi
        call puts
        mov %r10d, %eax
        call puthex
        mov $'\n', %al
        call putc
        mov $0, %al
        jmp finish

        .section .rodata
t_n:    .asciz "pages: n="
t_fnv:  .asciz " fnv="
