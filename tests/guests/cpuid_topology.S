/* Every vCPU reports its CPUID topology on COM1, one line each:
 *   vcpu lapic=<LAPIC ID register> apic=<0xB EDX> l1ebx=<1 EBX> b0=<0xB.0 EAX>/<EBX>/<ECX>
 *        b1=<0xB.1 EAX>/<EBX>/<ECX> x8=<0x80000008 ECX>
 * The BSP reports, maps the local APIC (PD for 3-4 GiB at 0xC000), walks
 * the MADT (boot_params.acpi_rsdp_addr -> XSDT -> "APIC") and starts each
 * other APIC id with INIT + SIPI (vector 0x01: the real-mode trampoline at
 * 0x1000, which enters 64-bit mode on the boot GDT and page tables), one
 * at a time, waiting for its report.  Then "vcpus: <n>" and exit 0. */
        .include "lib.inc"
        .set AP_DONE, 0x6f00
        .set AP_STACK, 0x6000
        .set LAPIC, 0xfee00000
        .set ICR_LO, LAPIC + 0x300
        .set ICR_HI, LAPIC + 0x310

        .globl _start
_start:
        mov 0x70(%rsi), %r15            /* RSDP */
        /* map the LAPIC: PDPT[3] -> PD at 0xC000, PD[503] = 0xFEE00000 2 MiB, PCD */
        mov $(0xfee00000 | 0x93), %eax   /* zero-extended into %rax */
        mov %rax, 0xc000 + 503 * 8
        movq $(0xc000 | 3), 0xa000 + 3 * 8
        mov %cr3, %rax
        mov %rax, %cr3
        call report
        /* XSDT -> MADT */
        mov 24(%r15), %rbx              /* XSDT */
        mov 4(%rbx), %ecx
        sub $36, %ecx
        shr $3, %ecx
        lea 36(%rbx), %rdi
1:      mov (%rdi), %rax
        cmpl $0x43495041, (%rax)        /* "APIC" */
        je 2f
        add $8, %rdi
        dec %ecx
        jnz 1b
        jmp no_madt
2:      mov %rax, %r12                  /* MADT */
        mov 4(%r12), %r13d
        add %r12, %r13                  /* end */
        lea 44(%r12), %r14              /* first entry */
        mov $1, %ebp                    /* vCPUs seen (the BSP) */
next_entry:
        cmp %r13, %r14
        jae all_started
        movzbl (%r14), %eax             /* type */
        movzbl 1(%r14), %ebx            /* length */
        test %ebx, %ebx
        jz no_madt
        cmp $0, %eax
        jne 3f
        movzbl 3(%r14), %edi            /* xAPIC id */
        jmp start_one
3:      cmp $9, %eax
        jne skip
        mov 4(%r14), %edi               /* x2APIC id */
start_one:
        test %edi, %edi                 /* APIC 0 is us */
        jz skip
        inc %ebp
        movl $0, AP_DONE
        shl $24, %edi
        mov $ICR_HI, %eax               /* above 2 GiB: through a register */
        mov $ICR_LO, %edx
        mov %edi, (%rax)
        movl $0x00004500, (%rdx)        /* INIT, assert */
        mov %edi, (%rax)
        movl $0x00004601, (%rdx)        /* STARTUP, vector 0x01 -> 0x1000 */
4:      pause
        cmpl $1, AP_DONE
        jne 4b
skip:
        add %rbx, %r14
        jmp next_entry
all_started:
        mov $COM1, %dx
        lea s_vcpus(%rip), %rsi
        call puts
        mov %ebp, %eax
        call puthex
        mov $'\n', %al
        call putc
        mov $0, %al
        jmp finish
no_madt:
        mov $COM1, %dx
        lea s_nomadt(%rip), %rsi
        call puts
        mov $1, %al
        jmp finish

/* report: one line for the running vCPU on COM1 */
report:
        mov $0xb, %eax
        xor %ecx, %ecx
        cpuid
        mov %eax, %r8d
        mov %ebx, %r9d
        mov %ecx, %r10d
        mov %edx, %r11d                 /* x2APIC id */
        mov $1, %eax
        cpuid
        push %rbx                       /* leaf 1 EBX */
        mov $0x80000008, %eax
        cpuid
        push %rcx
        mov $0xb, %eax
        mov $1, %ecx
        cpuid
        push %rax
        push %rbx
        push %rcx
        mov $COM1, %dx
        lea s_lapic(%rip), %rsi
        call puts
        mov $(LAPIC + 0x20), %eax       /* LAPIC ID register, id in bits 31:24 */
        mov (%rax), %eax
        shr $24, %eax
        call puthex
        lea s_apic(%rip), %rsi
        call puts
        mov %r11d, %eax
        call puthex
        lea s_l1(%rip), %rsi
        call puts
        mov 32(%rsp), %eax
        call puthex
        lea s_b0(%rip), %rsi
        call puts
        mov %r8d, %eax
        call puthex
        call slash
        mov %r9d, %eax
        call puthex
        call slash
        mov %r10d, %eax
        call puthex
        lea s_b1(%rip), %rsi
        call puts
        mov 16(%rsp), %eax
        call puthex
        call slash
        mov 8(%rsp), %eax
        call puthex
        call slash
        mov 0(%rsp), %eax
        call puthex
        lea s_x8(%rip), %rsi
        call puts
        mov 24(%rsp), %eax
        call puthex
        mov $'\n', %al
        call putc
        add $40, %rsp
        ret
slash:
        mov $'/', %al
        jmp putc

/* APs land here in 64-bit mode from the trampoline. */
ap_long:
        mov $16, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov $AP_STACK, %rsp
        call report
        movl $1, AP_DONE
1:      cli
        hlt
        jmp 1b

        .section .rodata
s_lapic:  .asciz "vcpu lapic="
s_apic:   .asciz " apic="
s_l1:     .asciz " l1ebx="
s_b0:     .asciz " b0="
s_b1:     .asciz " b1="
s_x8:     .asciz " x8="
s_vcpus:  .asciz "vcpus: "
s_nomadt: .asciz "no MADT found\n"

/* Real-mode trampoline at 0x1000, the way Linux's own trampoline goes:
 * 16-bit -> 32-bit protected mode (own GDT: null, code64 0x08, data 0x10,
 * code32 0x18) -> PAE, CR3 = 0x9000 (the VMM's identity map), EFER.LME,
 * paging -> 64-bit ap_long.  (This emulated KVM refuses EFER writes from
 * real mode.) */
        .section .ap, "ax"
        .code16
ap_entry:
        cli
        xor %ax, %ax
        mov %ax, %ds
        lgdtl ap_gdt_desc
        mov %cr0, %eax
        or $1, %eax                     /* PE */
        mov %eax, %cr0
        ljmpl $0x18, $ap_prot
        .code32
ap_prot:
        mov $0x10, %ax
        mov %ax, %ds
        mov %ax, %ss
        mov $0x20, %eax                 /* PAE */
        mov %eax, %cr4
        mov $0x9000, %eax
        mov %eax, %cr3
        mov $0xc0000080, %ecx
        rdmsr
        or $0x100, %eax                 /* LME */
        wrmsr
        mov %cr0, %eax
        or $0x80000000, %eax            /* PG */
        mov %eax, %cr0
        ljmp $0x08, $ap_long
        .balign 8
ap_gdt:
        .quad 0
        .quad 0x00af9b000000ffff        /* 0x08 code, 64-bit */
        .quad 0x00cf93000000ffff        /* 0x10 data */
        .quad 0x00cf9b000000ffff        /* 0x18 code, 32-bit */
ap_gdt_desc:
        .word 31
        .long ap_gdt
        .code64
