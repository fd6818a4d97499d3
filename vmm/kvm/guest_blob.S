/* The guest image and its symbol table, embedded so the binary needs no file at run time.
 * GUEST_BIN and GUEST_SYMS are absolute paths passed by CMake. */
.section .rodata
.balign 4096
.globl activemm_guest_bin_start, activemm_guest_bin_end
activemm_guest_bin_start:
.incbin GUEST_BIN
activemm_guest_bin_end:
.balign 8
.globl activemm_guest_syms_start, activemm_guest_syms_end
activemm_guest_syms_start:
.incbin GUEST_SYMS
activemm_guest_syms_end:
.section .note.GNU-stack, "", @progbits
