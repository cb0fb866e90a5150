//! Register writes to a device model's BAR pages, as MMIO traps do.
//!
//! A device model must see each store a driver makes to its registers
//! (a doorbell acts at once; write-1-to-clear bits clear; a repeated value
//! is still a write), which shared memory cannot show. So the pages of a
//! mapping that hold the model's registers are mapped read-only: loads are
//! plain loads of the shared BAR memory the model keeps current, and a
//! store faults. The `SIGSEGV` handler here decodes the faulting
//! instruction (x86-64 `mov` stores of 1, 2, 4 or 8 bytes from a register
//! or an immediate, `movnti`, and `movdir64b`, the 64-byte store DSA
//! portals take), sends the write to the server as a `pwrite` of the device
//! file at that register, and resumes after the instruction. A CPU without
//! `movdir64b` raises `SIGILL` for it instead; the `SIGILL` handler does the
//! same when its destination is a trapped portal, so such drivers run on
//! any x86-64. Any other fault goes to the handler the program had, or
//! kills it as the fault would have.
//!
//! On other architectures nothing is trapped: the model sees stores only
//! by watching memory.
//!
//! The same handler (for `SIGBUS` too) first resumes a fault inside the
//! shim's copy of a program's argument struct (see `user_copy`).

use libc::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// One trapped range: `[start, start + len)` of the program's address space
/// shows device file `ino` from file offset `offset`. A slot is free while
/// `len` is 0; it is filled `ino`, `offset`, `start`, then `len`, so the
/// handler never sees a half-written one.
struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    ino: AtomicU64,
    offset: AtomicU64,
}

const SLOTS: usize = 64;
#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    ino: AtomicU64::new(0),
    offset: AtomicU64::new(0),
};
static TRAPS: [Slot; SLOTS] = [FREE; SLOTS];

/// The program's own handler of a signal we keep for ourselves: its
/// address (or `SIG_DFL`/`SIG_IGN`) and `sa_flags`. Atomics, since the
/// signal handler reads them.
struct Saved {
    handler: AtomicUsize,
    flags: AtomicI32,
}

/// The program's `SIGSEGV` and `SIGILL` handlers: the ones it had when the
/// trap was installed, then whatever it sets later (its `sigaction` and
/// `signal` calls for them land here while ours stays installed).
static PREVIOUS: Saved = Saved {
    handler: AtomicUsize::new(0),
    flags: AtomicI32::new(0),
};
static PREVIOUS_ILL: Saved = Saved {
    handler: AtomicUsize::new(0),
    flags: AtomicI32::new(0),
};
static PREVIOUS_BUS: Saved = Saved {
    handler: AtomicUsize::new(0),
    flags: AtomicI32::new(0),
};
/// Whether our handlers are installed.
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Whether a range was ever trapped: `munmap`, which every program calls,
/// skips the table until then.
static ANY_TRAP: AtomicBool = AtomicBool::new(false);

fn saved(sig: c_int) -> Option<&'static Saved> {
    match sig {
        libc::SIGSEGV => Some(&PREVIOUS),
        libc::SIGILL => Some(&PREVIOUS_ILL),
        libc::SIGBUS => Some(&PREVIOUS_BUS),
        _ => None,
    }
}

/// The program setting its handler of `sig`: `Some(previous handler and
/// flags)` when the trap keeps that signal (the new handler is remembered
/// for faults that are not ours), `None` to let the C library do it.
pub(crate) fn program_sets_handler(
    sig: c_int,
    handler: Option<(usize, c_int)>,
) -> Option<(usize, c_int)> {
    if !INSTALLED.load(Ordering::Acquire) {
        return None;
    }
    let saved = saved(sig)?;
    let old = (
        saved.handler.load(Ordering::Acquire),
        saved.flags.load(Ordering::Acquire),
    );
    if let Some((h, f)) = handler {
        saved.flags.store(f, Ordering::Release);
        saved.handler.store(h, Ordering::Release);
    }
    Some(old)
}

/// Whether this architecture's stores can be decoded.
pub(crate) const SUPPORTED: bool = cfg!(target_arch = "x86_64");

/// Maps `[addr, addr + len)` read-only and sends its stores to device file
/// `ino` at file offset `offset`. False when nothing could be set up (the
/// mapping then stays writable and the model watches it).
pub(crate) fn trap(addr: usize, len: usize, ino: u64, offset: u64) -> bool {
    if !SUPPORTED || len == 0 || !install_handler() {
        return false;
    }
    let Some(slot) = TRAPS.iter().find(|s| {
        s.len
            .compare_exchange(0, usize::MAX, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }) else {
        return false;
    };
    slot.ino.store(ino, Ordering::Relaxed);
    slot.offset.store(offset, Ordering::Relaxed);
    slot.start.store(addr, Ordering::Relaxed);
    // SAFETY: the range is a mapping the shim just made for the program;
    // dropping its write permission changes no memory.
    let ok = unsafe { libc::mprotect(addr as *mut c_void, len, libc::PROT_READ) } == 0;
    if ok {
        ANY_TRAP.store(true, Ordering::Release);
    }
    slot.len.store(if ok { len } else { 0 }, Ordering::Release);
    ok
}

/// Forgets traps inside `[addr, addr + len)` (the program unmapped it).
pub(crate) fn forget(addr: usize, len: usize) {
    if !ANY_TRAP.load(Ordering::Acquire) {
        return;
    }
    for slot in &TRAPS {
        let slot_len = slot.len.load(Ordering::Acquire);
        if slot_len == 0 || slot_len == usize::MAX {
            continue;
        }
        let start = slot.start.load(Ordering::Relaxed);
        if start < addr.saturating_add(len) && addr < start + slot_len {
            slot.len.store(0, Ordering::Release);
        }
    }
}

/// The device file and offset a store at `addr` reaches, if trapped.
fn lookup(addr: usize) -> Option<(u64, u64)> {
    TRAPS.iter().find_map(|slot| {
        let len = slot.len.load(Ordering::Acquire);
        let start = slot.start.load(Ordering::Relaxed);
        (len != 0 && len != usize::MAX && addr >= start && addr - start < len).then(|| {
            let offset = slot.offset.load(Ordering::Relaxed) + (addr - start) as u64;
            (slot.ino.load(Ordering::Relaxed), offset)
        })
    })
}

fn install_handler() -> bool {
    static ONCE: OnceLock<bool> = OnceLock::new();
    *ONCE.get_or_init(|| {
        // SAFETY: a zeroed sigaction is a valid value to fill; the real
        // sigaction reads `ours` and writes `old`, both live for the call.
        unsafe {
            let mut ours: libc::sigaction = std::mem::zeroed();
            ours.sa_sigaction = on_segv as *const () as usize;
            ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut ours.sa_mask);
            for (sig, saved) in [
                (libc::SIGSEGV, &PREVIOUS),
                (libc::SIGILL, &PREVIOUS_ILL),
                (libc::SIGBUS, &PREVIOUS_BUS),
            ] {
                let mut old: libc::sigaction = std::mem::zeroed();
                if (super::real().sigaction)(sig, &ours, &mut old) != 0 {
                    return false;
                }
                saved.flags.store(old.sa_flags, Ordering::Release);
                saved.handler.store(old.sa_sigaction, Ordering::Release);
            }
        }
        INSTALLED.store(true, Ordering::Release);
        true
    })
}

/// Whether the fault handler is in place (installing it now if it never
/// was): a fault in the shim's user copy is then caught.
pub(crate) fn fault_handler_ready() -> bool {
    SUPPORTED && install_handler() && INSTALLED.load(Ordering::Acquire)
}

/// A decoded store: its width in bytes, the value, and the instruction's
/// length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Store {
    pub width: usize,
    pub value: u64,
    pub len: usize,
    /// `movdir64b`: the address of the 64 bytes stored, and where they go
    /// (the value of the register naming it).
    pub block: Option<(u64, u64)>,
}

/// Decodes an x86-64 store at the start of `code` (the instruction at
/// `rip`), reading register `n` (0 rax … 15 r15) through `reg`. `None` for
/// anything else.
pub(crate) fn decode(code: &[u8], rip: u64, reg: impl Fn(usize) -> u64) -> Option<Store> {
    let mut i = 0;
    let mut opsize16 = false;
    let mut rex = 0u8;
    while let Some(&b) = code.get(i) {
        match b {
            0x66 => opsize16 = true,
            0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65 | 0xf0 => {}
            _ => break,
        }
        i += 1;
    }
    if let Some(&b) = code.get(i) {
        if b & 0xf0 == 0x40 {
            rex = b;
            i += 1;
        }
    }
    let (w, r) = (rex & 8 != 0, rex & 4 != 0);
    if opsize16 && code.get(i..i + 3) == Some(&[0x0f, 0x38, 0xf8][..]) {
        return movdir64b(code, i + 3, rex, rip, &reg);
    }
    let width = if w {
        8
    } else if opsize16 {
        2
    } else {
        4
    };
    let op = *code.get(i)?;
    i += 1;
    let (width, source, imm) = match op {
        0x88 => (1, Source::Reg, 0),
        0x89 => (width, Source::Reg, 0),
        0xc6 => (1, Source::Imm, 1),
        0xc7 => (width, Source::Imm, width.min(4)),
        0x0f if code.get(i) == Some(&0xc3) => {
            i += 1;
            (if w { 8 } else { 4 }, Source::Reg, 0)
        }
        _ => return None,
    };
    let modrm = *code.get(i)?;
    i += 1;
    let (md, regf, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if md == 3 || (matches!(source, Source::Imm) && regf != 0) {
        return None;
    }
    if rm == 4 {
        let sib = *code.get(i)?;
        i += 1;
        if md == 0 && sib & 7 == 5 {
            i += 4;
        }
    }
    i += match (md, rm) {
        (0, 5) => 4,
        (1, _) => 1,
        (2, _) => 4,
        _ => 0,
    };
    let value = match source {
        Source::Reg => {
            let n = usize::from(regf) + if r { 8 } else { 0 };
            if width == 1 && rex == 0 && (4..8).contains(&n) {
                // AH, CH, DH, BH.
                (reg(n - 4) >> 8) & 0xff
            } else {
                reg(n)
            }
        }
        Source::Imm => {
            let bytes = code.get(i..i + imm)?;
            let mut raw = [0u8; 8];
            raw[..imm].copy_from_slice(bytes);
            i += imm;
            let v = u64::from_le_bytes(raw);
            if width == 8 {
                // imm32 sign-extended.
                v as u32 as i32 as i64 as u64
            } else {
                v
            }
        }
    };
    let mask = if width == 8 {
        !0
    } else {
        (1u64 << (8 * width)) - 1
    };
    Some(Store {
        width,
        value: value & mask,
        len: i,
        block: None,
    })
}

/// A 32-bit displacement at `code[i..]`, sign-extended.
fn disp32(code: &[u8], i: usize) -> Option<u64> {
    let d = code.get(i..i + 4)?;
    Some(i32::from_le_bytes([d[0], d[1], d[2], d[3]]) as i64 as u64)
}

/// `movdir64b reg, m512` from its ModRM at `code[i]`: the source's
/// effective address and the destination register's value.
fn movdir64b(
    code: &[u8],
    mut i: usize,
    rex: u8,
    rip: u64,
    reg: &impl Fn(usize) -> u64,
) -> Option<Store> {
    let (rex_r, rex_x, rex_b) = (rex & 4 != 0, rex & 2 != 0, rex & 1 != 0);
    let ext = |n: u8, extend: bool| usize::from(n) + if extend { 8 } else { 0 };
    let modrm = *code.get(i)?;
    i += 1;
    let (md, regf, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if md == 3 {
        return None;
    }
    let dst = reg(ext(regf, rex_r));
    let mut ea = 0u64;
    let mut rip_relative = false;
    if rm == 4 {
        let sib = *code.get(i)?;
        i += 1;
        let (scale, index, base) = (sib >> 6, (sib >> 3) & 7, sib & 7);
        if index != 4 || rex_x {
            ea = reg(ext(index, rex_x)) << scale;
        }
        if base == 5 && md == 0 {
            ea = ea.wrapping_add(disp32(code, i)?);
            i += 4;
        } else {
            ea = ea.wrapping_add(reg(ext(base, rex_b)));
        }
    } else if rm == 5 && md == 0 {
        rip_relative = true;
        ea = disp32(code, i)?;
        i += 4;
    } else {
        ea = reg(ext(rm, rex_b));
    }
    match md {
        1 => {
            ea = ea.wrapping_add(*code.get(i)? as i8 as i64 as u64);
            i += 1;
        }
        2 => {
            ea = ea.wrapping_add(disp32(code, i)?);
            i += 4;
        }
        _ => {}
    }
    if rip_relative {
        ea = ea.wrapping_add(rip + i as u64);
    }
    Some(Store {
        width: 64,
        value: 0,
        len: i,
        block: Some((ea, dst)),
    })
}

#[derive(Clone, Copy)]
enum Source {
    Reg,
    Imm,
}

#[cfg(target_arch = "x86_64")]
extern "C" fn on_segv(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo and ucontext to an
    // SA_SIGINFO handler; the faulting instruction's bytes are readable
    // (they were just fetched), and the registers live in the ucontext.
    unsafe {
        let uc = ctx.cast::<libc::ucontext_t>();
        let gregs = &mut (*uc).uc_mcontext.gregs;
        if let Some(resume) = super::user_copy::fixup(gregs[libc::REG_RIP as usize] as u64) {
            gregs[libc::REG_RIP as usize] = resume as i64;
            return;
        }
        let addr = (*info).si_addr() as usize;
        let illegal = sig == libc::SIGILL;
        if sig == libc::SIGBUS {
            chain(sig, info, ctx);
            return;
        }
        if illegal || gregs[libc::REG_ERR as usize] & 2 != 0 {
            let rip = gregs[libc::REG_RIP as usize] as u64;
            let code = std::slice::from_raw_parts(rip as *const u8, 15);
            let snapshot = *gregs;
            let reg = |n: usize| snapshot[GREG[n] as usize] as u64;
            if let Some(store) = decode(code, rip, reg) {
                // SIGILL: only a movdir64b whose destination is trapped.
                let target = match store.block {
                    Some((_, dst)) if illegal => Some(dst as usize),
                    _ if illegal => None,
                    _ => Some(addr),
                };
                if let Some((ino, offset)) = target.and_then(lookup) {
                    let bytes = store.value.to_le_bytes();
                    let source = match store.block {
                        Some((src, _)) => src,
                        None => bytes.as_ptr() as u64,
                    };
                    let _ = crate::vfio_rw(ino, source, store.width as u64, offset, true);
                    gregs[libc::REG_RIP as usize] += store.len as i64;
                    return;
                }
            }
        }
        chain(sig, info, ctx);
    }
}

/// The ucontext register of x86-64 register number `n` (rax, rcx, ...).
#[cfg(target_arch = "x86_64")]
const GREG: [i32; 16] = [
    libc::REG_RAX,
    libc::REG_RCX,
    libc::REG_RDX,
    libc::REG_RBX,
    libc::REG_RSP,
    libc::REG_RBP,
    libc::REG_RSI,
    libc::REG_RDI,
    libc::REG_R8,
    libc::REG_R9,
    libc::REG_R10,
    libc::REG_R11,
    libc::REG_R12,
    libc::REG_R13,
    libc::REG_R14,
    libc::REG_R15,
];

#[cfg(not(target_arch = "x86_64"))]
extern "C" fn on_segv(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: as for x86-64: forwarding what the kernel passed.
    unsafe { chain(sig, info, ctx) }
}

/// Passes a fault that is not ours to the program's handler, or restores
/// the default action so that returning re-runs the fault and it kills the
/// program as it would have.
///
/// # Safety
/// The arguments of a signal handler invocation.
unsafe fn chain(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let Some(saved) = saved(sig) else {
        return;
    };
    let handler = saved.handler.load(Ordering::Acquire);
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // SAFETY: a zeroed sigaction with SIG_DFL is valid; the real
        // sigaction, not the shim's, so that the default really returns.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            (super::real().sigaction)(sig, &dfl, std::ptr::null_mut());
        }
        INSTALLED.store(false, Ordering::Release);
        return;
    }
    if saved.flags.load(Ordering::Acquire) & libc::SA_SIGINFO != 0 {
        // SAFETY: the program installed this SA_SIGINFO handler.
        let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: the program installed this plain handler.
        let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(n: usize) -> u64 {
        0x1111_0000_0000_0000 | (n as u64) << 8 | 0xaa
    }

    #[test]
    fn the_stores_drivers_compile_to_decode() {
        // mov %al,(%rdi)            88 07
        assert_eq!(
            decode(&[0x88, 0x07], 0, regs),
            Some(Store {
                width: 1,
                value: 0xaa,
                len: 2,
                block: None
            })
        );
        // mov %ah,(%rdi): the high byte of rax.
        assert_eq!(decode(&[0x88, 0x27], 0, regs).unwrap().value, 0x00);
        // mov %ax,0x86(%rdx)        66 89 82 86 00 00 00
        assert_eq!(
            decode(&[0x66, 0x89, 0x82, 0x86, 0, 0, 0], 0, regs),
            Some(Store {
                width: 2,
                value: 0x00aa,
                len: 7,
                block: None
            })
        );
        // mov %ecx,0x8(%rax)        89 48 08
        let s = decode(&[0x89, 0x48, 0x08], 0, regs).unwrap();
        assert_eq!((s.width, s.value, s.len), (4, 0x1aa, 3));
        // mov %r9,0x10(%rax,%rbx,1) 4c 89 4c 18 10
        let s = decode(&[0x4c, 0x89, 0x4c, 0x18, 0x10], 0, regs).unwrap();
        assert_eq!((s.width, s.value, s.len), (8, regs(9), 5));
        // movb $0x20,0x84(%rdi)     c6 87 84 00 00 00 20
        assert_eq!(
            decode(&[0xc6, 0x87, 0x84, 0, 0, 0, 0x20], 0, regs),
            Some(Store {
                width: 1,
                value: 0x20,
                len: 7,
                block: None
            })
        );
        // movq $-1,(%rax)           48 c7 00 ff ff ff ff
        let s = decode(&[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff], 0, regs).unwrap();
        assert_eq!((s.width, s.value, s.len), (8, !0, 7));
        // mov %eax,0x0(%rip)        89 05 00 00 00 00
        assert_eq!(decode(&[0x89, 0x05, 0, 0, 0, 0], 0, regs).unwrap().len, 6);
        // movnti %rax,(%rdi)        48 0f c3 07
        assert_eq!(decode(&[0x48, 0x0f, 0xc3, 0x07], 0, regs).unwrap().width, 8);
        // movdir64b %(rdx),%rax        66 0f 38 f8 02
        let s = decode(&[0x66, 0x0f, 0x38, 0xf8, 0x02], 0, regs).unwrap();
        assert_eq!((s.width, s.len, s.block), (64, 5, Some((regs(2), regs(0)))));
        // movdir64b 0x10(%rdx),%rax    66 0f 38 f8 42 10
        let s = decode(&[0x66, 0x0f, 0x38, 0xf8, 0x42, 0x10], 0, regs).unwrap();
        assert_eq!((s.len, s.block), (6, Some((regs(2) + 0x10, regs(0)))));
        // movdir64b 0x10(%rip),%r9     66 44 0f 38 f8 0d 10 00 00 00
        let s = decode(
            &[0x66, 0x44, 0x0f, 0x38, 0xf8, 0x0d, 0x10, 0, 0, 0],
            0x1000,
            regs,
        )
        .unwrap();
        assert_eq!((s.len, s.block), (10, Some((0x1000 + 10 + 0x10, regs(9)))));
        // movdir64b (%rax,%rbx,4),%rcx 66 0f 38 f8 0c 98
        let s = decode(&[0x66, 0x0f, 0x38, 0xf8, 0x0c, 0x98], 0, regs).unwrap();
        assert_eq!(s.block, Some((regs(0) + (regs(3) << 2), regs(1))));
        // Loads, register moves and vector stores are not ours.
        assert_eq!(decode(&[0x8b, 0x07], 0, regs), None);
        assert_eq!(decode(&[0x89, 0xc7], 0, regs), None);
        assert_eq!(decode(&[0x0f, 0x11, 0x07], 0, regs), None);
        assert_eq!(decode(&[], 0, regs), None);
    }
}
