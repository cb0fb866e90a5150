//! Fail the n-th allocation or pin, for n = 1, 2, … until the operation
//! succeeds: every failure must leave the IOAS exactly as it was, with no
//! pages, pins or charges leaked (the kernel's `iommufd_fail_nth` idea).

mod common;
use common::*;
use softiommu_engine::ioas::Prot;
use softiommu_engine::memory::SimFile;
use softiommu_engine::pages::live_pages;
use softiommu_engine::{Errno, MapArgs};
use std::sync::{Arc, Mutex};

/// `live_pages` is process-wide: run the sweeps one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const RW: Prot = Prot {
    read: true,
    write: true,
};

struct World {
    h: Harness,
    a: u32,
    b: u32,
    file: Arc<SimFile>,
}

/// Two IOAS with some areas, a reserved range, an allowed range and a pin.
fn world() -> World {
    let mut h = Harness::new();
    let a = h.ctx.ioas_alloc().unwrap();
    let b = h.ctx.ioas_alloc().unwrap();
    let (ctx, caller) = h.split();
    for i in 0..4 {
        ctx.ioas_map(
            &caller,
            a,
            BUF + i * 0x10000,
            MapArgs {
                iova: Some(0x10_0000 + i * 4 * PAGE),
                length: 4 * PAGE,
                prot: RW,
            },
        )
        .unwrap();
    }
    h.ctx.ioas_add_reserved(a, 0x80_0000, 0x1000).unwrap();
    h.ctx
        .ioas_allow_iovas(b, &[(0x100_0000, 0x1ff_ffff)])
        .unwrap();
    h.ctx
        .ioas_mut(a)
        .unwrap()
        .pin(0x10_0000, PAGE, true)
        .unwrap();
    let file = Arc::new(SimFile::new(32 * PAGE as usize, true));
    World { h, a, b, file }
}

type Step = fn(&mut World) -> Result<(), Errno>;

fn sweep(name: &str, step: Step) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut n = 1;
    loop {
        let mut w = world();
        let before = (
            w.h.ctx.ioas(w.a).unwrap().snapshot(),
            w.h.ctx.ioas(w.b).unwrap().snapshot(),
        );
        let pins = w.h.shared.pinned_frames();
        let charged = w.h.shared.accounting.user_locked(w.h.creds.uid);
        let pages = live_pages();
        let objects = w.h.ctx.objects().len();
        w.h.shared.fail_nth.fail_nth(n);
        let outcome = step(&mut w);
        let reached = !w.h.shared.fail_nth.pending();
        w.h.shared.fail_nth.fail_nth(0);
        if !reached {
            assert!(
                outcome.is_ok(),
                "{name}: failed with {outcome:?} without an injected fault"
            );
            println!("{name}: {} failure points, all unwound", n - 1);
            return;
        }
        if outcome.is_ok() {
            // The injected failure hit a step that may fail harmlessly (none yet).
            n += 1;
            continue;
        }
        assert_eq!(outcome, Err(Errno::ENOMEM), "{name}: failure point {n}");
        let after = (
            w.h.ctx.ioas(w.a).unwrap().snapshot(),
            w.h.ctx.ioas(w.b).unwrap().snapshot(),
        );
        assert_eq!(before, after, "{name}: state changed by failure point {n}");
        assert_eq!(
            w.h.shared.pinned_frames(),
            pins,
            "{name}: pins leaked at {n}"
        );
        assert_eq!(
            w.h.shared.accounting.user_locked(w.h.creds.uid),
            charged,
            "{name}: charge leaked at {n}"
        );
        assert_eq!(live_pages(), pages, "{name}: pages leaked at {n}");
        assert_eq!(
            w.h.ctx.objects().len(),
            objects,
            "{name}: objects changed at {n}"
        );
        assert!(w.h.ctx.ioas(w.a).unwrap().free_space_is_consistent());
        assert!(w.h.ctx.ioas(w.b).unwrap().free_space_is_consistent());
        n += 1;
        assert!(n < 10_000, "{name}: never succeeded");
    }
}

#[test]
fn map_fixed_unwinds() {
    sweep("map fixed", |w| {
        let (ctx, c) = w.h.split();
        ctx.ioas_map(
            &c,
            w.a,
            BUF,
            MapArgs {
                iova: Some(0x40_0000),
                length: 8 * PAGE,
                prot: RW,
            },
        )
        .map(|_| ())
    });
}

#[test]
fn map_auto_unwinds() {
    sweep("map auto", |w| {
        let (ctx, c) = w.h.split();
        ctx.ioas_map(
            &c,
            w.b,
            BUF,
            MapArgs {
                iova: None,
                length: 8 * PAGE,
                prot: RW,
            },
        )
        .map(|_| ())
    });
}

#[test]
fn map_file_unwinds() {
    sweep("map file", |w| {
        let file = w.file.clone();
        let (ctx, c) = w.h.split();
        ctx.ioas_map_file(
            &c,
            w.a,
            file,
            PAGE,
            MapArgs {
                iova: None,
                length: 8 * PAGE,
                prot: RW,
            },
        )
        .map(|_| ())
    });
}

#[test]
fn copy_unwinds() {
    sweep("copy", |w| {
        w.h.ctx
            .ioas_copy(
                w.b,
                w.a,
                0x10_0000 + 2 * PAGE,
                MapArgs {
                    iova: None,
                    length: 12 * PAGE,
                    prot: RW,
                },
            )
            .map(|_| ())
    });
}

#[test]
fn unmap_unwinds() {
    sweep("unmap", |w| {
        w.h.ctx.ioas_unmap(w.a, 0x10_8000, 8 * PAGE).map(|_| ())
    });
}

#[test]
fn allow_and_reserve_unwind() {
    sweep("allow", |w| {
        w.h.ctx
            .ioas_allow_iovas(w.a, &[(0x200_0000, 0x2ff_ffff), (0x400_0000, 0x4ff_ffff)])
    });
    sweep("reserve", |w| {
        w.h.ctx.ioas_add_reserved(w.b, 0x10_0000, 0x1000)
    });
}

#[test]
fn pin_unwinds() {
    sweep("pin", |w| {
        w.h.ctx
            .ioas_mut(w.a)
            .unwrap()
            .pin(0x10_0000, 16 * PAGE, false)
            .map(|_| ())
    });
}
