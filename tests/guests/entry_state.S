/* Checks the 64-bit entry state ktstr-vmm promises (vmm.md section 6):
 * RSI = 0x7000 (boot_params with "HdrS" and an e820 table), RSP = 0x8FF0,
 * CR0 = 0x80000001, CR3 = 0x9000, CR4 = 0x20, EFER = 0x500, CS = 8,
 * DS = SS = 16, RFLAGS = 2, and the command line at cmd_line_ptr.
 * Prints "entry: ok" or "entry: bad <what>" on COM1, exits 0 or 1. */
        .include "lib.inc"
        .globl _start
_start:
        pushfq                  /* uses the stack: RSP must be valid */
        pop %r15
        mov %rsp, %r14
        lea bad_rsi(%rip), %rdi
        cmp $0x7000, %rsi
        jne fail
        lea bad_rsp(%rip), %rdi
        cmp $0x8ff0, %r14
        jne fail
        lea bad_rflags(%rip), %rdi
        cmp $2, %r15
        jne fail
        lea bad_cr0(%rip), %rdi
        mov %cr0, %rax
        mov $0x80000001, %ecx
        cmp %rcx, %rax
        jne fail
        lea bad_cr3(%rip), %rdi
        mov %cr3, %rax
        cmp $0x9000, %rax
        jne fail
        lea bad_cr4(%rip), %rdi
        mov %cr4, %rax
        cmp $0x20, %rax
        jne fail
        lea bad_efer(%rip), %rdi
        mov $0xc0000080, %ecx
        rdmsr
        and $0xd01, %eax        /* LME, LMA, NXE?, SCE: only LME|LMA expected */
        cmp $0x500, %eax
        jne fail
        lea bad_cs(%rip), %rdi
        mov %cs, %ax
        cmp $8, %ax
        jne fail
        lea bad_ds(%rip), %rdi
        mov %ds, %ax
        cmp $16, %ax
        jne fail
        mov %ss, %ax
        cmp $16, %ax
        jne fail
        lea bad_hdrs(%rip), %rdi
        cmpl $0x53726448, 0x202(%rsi)
        jne fail
        lea bad_e820(%rip), %rdi
        cmpb $2, 0x1e8(%rsi)    /* at least 2 e820 entries */
        jb fail
        cmpq $0, 0x2d0(%rsi)    /* first entry starts at 0 */
        jne fail
        cmpl $1, 0x2e0(%rsi)    /* RAM */
        jne fail
        lea bad_cmdline(%rip), %rdi
        mov 0x228(%rsi), %eax   /* cmd_line_ptr */
        cmp $0x20000, %eax
        jne fail
        cmpl $0x736e6f63, 0x20000 /* "cons": ktstr-vmm's command line starts "console=ttyS0" */
        jne fail
        lea bad_rsdp(%rip), %rdi
        mov 0x70(%rsi), %rax    /* acpi_rsdp_addr */
        cmpl $0x20445352, (%rax)  /* "RSD " */
        jne fail
        mov $COM1, %dx
        lea ok(%rip), %rsi
        call puts
        mov $0, %al
        jmp finish
fail:
        mov $COM1, %dx
        lea bad(%rip), %rsi
        call puts
        mov %rdi, %rsi
        call puts
        mov $'\n', %al
        call putc
        mov $1, %al
        jmp finish

        .section .rodata
ok:          .asciz "entry: ok\n"
bad:         .asciz "entry: bad "
bad_rsi:     .asciz "rsi"
bad_rsp:     .asciz "rsp"
bad_rflags:  .asciz "rflags"
bad_cr0:     .asciz "cr0"
bad_cr3:     .asciz "cr3"
bad_cr4:     .asciz "cr4"
bad_efer:    .asciz "efer"
bad_cs:      .asciz "cs"
bad_ds:      .asciz "ds/ss"
bad_hdrs:    .asciz "boot_params header"
bad_e820:    .asciz "e820"
bad_cmdline: .asciz "cmdline"
bad_rsdp:    .asciz "acpi_rsdp_addr"
