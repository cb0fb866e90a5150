//! Stand-ins: one `Pages` shared by the areas of an IOAS that map one
//! process's memory and that nothing has pinned, so that an area without a
//! domain or an access costs no `Pages` of its own (a VMM with a vIOMMU
//! may hold a million such maps). An area takes pages of its own, exactly
//! those a map would have made, before anything pins it.

use super::*;

impl Pages {
    /// A stand-in for the whole address space of `mm`: the pages of every
    /// area mapped from it that nothing has pinned yet, shared by all such
    /// areas of one IOAS (for which byte offsets are addresses). It never
    /// pins: an area takes pages of its own ([`Pages::own`]) before its
    /// first pin, so that a million maps without domains cost no `Pages`
    /// each. Reads and writes through it reach the memory as through the
    /// area's own pages would.
    pub fn stand_in(
        mm: Arc<dyn AddressSpace>,
        allow_device: bool,
        writable: bool,
        owner: AccountOwner,
        shared: &Arc<EngineState>,
    ) -> Arc<Pages> {
        let source = Source::User {
            mm,
            base: 0,
            allow_device,
        };
        Self::build(
            source,
            u64::MAX / PAGE_SIZE + 1,
            writable,
            true,
            owner,
            shared,
        )
    }

    /// Whether these are a stand-in ([`Pages::stand_in`]).
    pub fn is_stand_in(&self) -> bool {
        self.stand_in
    }

    /// Whether these are a stand-in for exactly these pages' source, access
    /// and owner, so that a new map of them may share it.
    pub fn stands_in_for(
        &self,
        mm: &Arc<dyn AddressSpace>,
        allow_device: bool,
        writable: bool,
        owner: AccountOwner,
    ) -> bool {
        let same_mm = match &self.source {
            Source::User {
                mm: m,
                allow_device: a,
                ..
            } => Arc::ptr_eq(m, mm) && *a == allow_device,
            Source::File { .. } => false,
        };
        self.stand_in && same_mm && self.writable == writable && self.owner() == owner
    }

    /// Pages of their own for an area that maps `length` bytes from byte
    /// `start_byte` of this stand-in, and the area's byte offset in them:
    /// what [`Pages::new`] would have made at map time.
    pub fn own(&self, start_byte: u64, length: u64) -> (Arc<Pages>, u64) {
        let (source, offset) = self.rebased(start_byte);
        let npages = (length + offset).div_ceil(PAGE_SIZE);
        let own = Self::build(
            source,
            npages,
            self.writable,
            false,
            self.owner(),
            &self.shared,
        );
        (own, offset)
    }

    /// The source re-based to the page that holds byte `start_byte`, and
    /// the byte's offset in that page.
    fn rebased(&self, start_byte: u64) -> (Source, u64) {
        let at = self.source.base().wrapping_add(start_byte);
        let base = at & !(PAGE_SIZE - 1);
        let source = match &self.source {
            Source::User {
                mm, allow_device, ..
            } => Source::User {
                mm: mm.clone(),
                base,
                allow_device: *allow_device,
            },
            Source::File { file, .. } => Source::File {
                file: file.clone(),
                base,
            },
        };
        (source, at % PAGE_SIZE)
    }

    /// Where byte `start_byte` of these pages lies, as `source+offset` with
    /// the source's page-aligned base: the same text for an area on a
    /// stand-in as on pages of its own.
    pub fn describe(&self, start_byte: u64) -> String {
        if !self.stand_in {
            return format!("{:?}+{start_byte:#x}", self.source);
        }
        let (source, offset) = self.rebased(start_byte);
        format!("{source:?}+{offset:#x}")
    }
}
