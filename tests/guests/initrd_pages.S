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
        mov %rsi, %r12                  /* boot_params */
        mov 0x218(%r12), %r8d           /* ramdisk_image */
        mov 0x0c0(%r12), %eax           /* ext_ramdisk_image */
        shl $32, %rax
        or %rax, %r8
        mov 0x21c(%r12), %r9d           /* ramdisk_size */
        mov 0x0c4(%r12), %eax           /* ext_ramdisk_size */
        shl $32, %rax
        or %rax, %r9
        mov $COM1, %dx
        test %r9, %r9
        jz none
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
none:
        lea t_none(%rip), %rsi
        call puts
        mov $1, %al
        jmp finish

        .section .rodata
t_n:    .asciz "pages: n="
t_fnv:  .asciz " fnv="
t_none: .asciz "initrd: none\n"
