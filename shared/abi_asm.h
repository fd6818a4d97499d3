/* The few ABI values that guest assembly needs, as macros (assembly cannot read C++ constants).
 * shared/abi.h defines its constants from these, so there is one source of truth. */
#ifndef ACTIVEMM_SHARED_ABI_ASM_H_
#define ACTIVEMM_SHARED_ABI_ASM_H_

#define ACTIVEMM_ABI_VERSION 8
#define ACTIVEMM_IMAGE_MAGIC 0x54534555474d4d41 /* "AMMGUEST" */
#define ACTIVEMM_IMAGE_LOAD_PA 0x200000
#define ACTIVEMM_KERNEL_TEXT_BASE 0xffffffff80000000
#define ACTIVEMM_HYPERCALL_PORT 0x510

#endif /* ACTIVEMM_SHARED_ABI_ASM_H_ */
