/* Reports where the initramfs is and what it holds, so a test can check
 * that ktstr-vmm copied it byte for byte: boot_params ramdisk_image /
 * ramdisk_size (with the ext_ fields for the upper 32 bits) and an FNV-1a
 * 32-bit hash of its bytes (after touching one byte per page, backwards), on COM1:
 *   "initrd: addr=XXXXXXXX size=XXXXXXXX fnv=XXXXXXXX"
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
        /* First one byte per page, last page first: under lazy image
           loading the background fill goes forwards, so these pages are
           likely still missing and get filled on demand. */
        lea -1(%r8,%r9), %rcx
2:      movzbl (%rcx), %eax
        sub $4096, %rcx
        cmp %r8, %rcx
        jae 2b
        mov $0x811c9dc5, %r10d          /* FNV-1a offset basis */
        mov %r8, %rcx
        mov %r9, %rbx
1:      movzbl (%rcx), %eax
        xor %eax, %r10d
        imul $0x01000193, %r10d, %r10d  /* FNV prime */
        inc %rcx
        dec %rbx
        jnz 1b
        lea t_addr(%rip), %rsi
        call puts
        mov %r8d, %eax
        call puthex
        lea t_size(%rip), %rsi
        call puts
        mov %r9d, %eax
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
t_addr: .asciz "initrd: addr="
t_size: .asciz " size="
t_fnv:  .asciz " fnv="
t_none: .asciz "initrd: none\n"
