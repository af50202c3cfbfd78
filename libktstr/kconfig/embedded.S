/* The kconfig fragment, compiled into libktstr so that ktstr-kconfig emit and
 * the kconfig hash never depend on a file found at run time.  The path is
 * relative to the repository root, where make runs; the Makefile makes this
 * object depend on the fragment so an edit rebuilds it. */
	.section .rodata.ktstr_kconfig, "a"
	.global ktstr_kconfig_fragment_start
	.global ktstr_kconfig_fragment_end
ktstr_kconfig_fragment_start:
	.incbin "kconfig/ktstr.kconfig"
ktstr_kconfig_fragment_end:
	.byte 0
	.section .note.GNU-stack, "", @progbits
