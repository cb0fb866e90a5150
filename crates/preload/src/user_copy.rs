//! Copies to and from memory the program named, which may not be there:
//! an ioctl's argument struct is staged in the call page by the shim, and
//! a bad pointer must be `EFAULT` for the program, not a crash.
//!
//! The copy is one `rep movsb` at a known address. A fault inside it
//! reaches the shim's `SIGSEGV`/`SIGBUS` handler (the trap module's, which
//! asks [`fixup`] first), which resumes at the instruction after it with
//! the count of bytes left, as the kernel's exception tables do for its
//! own user copies. Without the handler (another architecture, or the
//! handler gone) nothing is copied and callers take the slow path, where
//! the server reads the program's memory itself.

#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".pushsection .text.softiommu_user_copy,\"ax\",@progbits",
    ".p2align 4",
    ".globl softiommu_user_copy",
    ".hidden softiommu_user_copy",
    ".type softiommu_user_copy,@function",
    "softiommu_user_copy:",
    "    mov rcx, rdx",
    ".globl softiommu_user_copy_insn",
    ".hidden softiommu_user_copy_insn",
    "softiommu_user_copy_insn:",
    "    rep movsb",
    ".globl softiommu_user_copy_fixup",
    ".hidden softiommu_user_copy_fixup",
    "softiommu_user_copy_fixup:",
    "    mov rax, rcx",
    "    ret",
    ".size softiommu_user_copy, . - softiommu_user_copy",
    ".popsection",
);

#[cfg(target_arch = "x86_64")]
extern "C" {
    /// Copies `len` bytes from `src` to `dst` (SysV: rdi, rsi, rdx);
    /// returns how many were left when a fault stopped it (0: all done).
    fn softiommu_user_copy(dst: *mut u8, src: *const u8, len: usize) -> usize;
    /// The `rep movsb` that may fault.
    static softiommu_user_copy_insn: u8;
    /// Where a fault in it resumes.
    static softiommu_user_copy_fixup: u8;
}

/// Where a fault at `rip` resumes, if `rip` is the copy's instruction.
#[cfg(target_arch = "x86_64")]
pub(crate) fn fixup(rip: u64) -> Option<u64> {
    let insn = std::ptr::addr_of!(softiommu_user_copy_insn) as u64;
    let resume = std::ptr::addr_of!(softiommu_user_copy_fixup) as u64;
    (rip == insn).then_some(resume)
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn fixup(_rip: u64) -> Option<u64> {
    None
}

/// Copies `len` bytes from `src` to `dst`, either of which the program
/// gave: true when all were copied; false when an access faulted (some
/// bytes may have been copied) or no fault handler can catch it.
///
/// # Safety
/// Whatever of `[src, src + len)` and `[dst, dst + len)` is mapped
/// readable / writable may be read / written: the ranges do not overlap
/// memory the shim relies on, other than a buffer of its own.
pub(crate) unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if !super::trap::fault_handler_ready() {
            return false;
        }
        // SAFETY: the caller's contract; a fault inside is caught above.
        unsafe { softiommu_user_copy(dst, src, len) == 0 }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (dst, src, len);
        false
    }
}
