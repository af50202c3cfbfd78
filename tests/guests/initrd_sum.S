/* Reports where the initramfs is and what it holds, so a test can check
 * that ktstr-vmm copied it byte for byte: boot_params ramdisk_image /
 * ramdisk_size (with the ext_ fields for the upper 32 bits) and an FNV-1a
 * 32-bit hash of its bytes, on COM1:
 *   "initrd: addr=XXXXXXXX size=XXXXXXXX fnv=XXXXXXXX"
 * Exits 0; exits 1 with "initrd: none" when there is none. */
        .include "lib.inc"
        .globl _start
_start:
        call initrd                     /* %r8 addr, %r9 size, %dx COM1 */
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

        .section .rodata
t_addr: .asciz "initrd: addr="
t_size: .asciz " size="
t_fnv:  .asciz " fnv="
