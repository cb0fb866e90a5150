//! Fuzz targets for softiommu. Each target reads its input as a little
//! program: a sequence of operations, each chosen by a byte and fed by the
//! bytes after it, so that the fuzzer can learn which ids, sizes and
//! offsets reach deeper code. An input that runs out of bytes ends.
//!
//! - [`ioctls`]: iommufd ioctls (every command, the selftest's test
//!   commands, the VFIO container's) on several contexts of one engine,
//!   with argument structs in simulated memory.
//! - [`vfio`]: VFIO device files: bind, attach, every device ioctl, config
//!   space and BAR reads and writes, with the device models (I/OAT, DSA)
//!   doing DMA through the attached domain.
//! - [`protocol`]: the server's wire protocol from a raw socket: hellos,
//!   calls and garbage, against a server in this process.
//!
//! What counts as a finding: a panic (libFuzzer aborts on one, also in a
//! server thread), a hang (libFuzzer's `-timeout`), and memory growth past
//! `-rss_limit_mb`.

pub mod ioctls;
pub mod protocol;
pub mod vfio;

/// One engine for every input of a target: closing an input's contexts and
/// files must leave it as it was (what the `ioctls` checks at the end look
/// at; a device file's first open resets its function, as vfio-pci's
/// does), and making a machine costs more than most inputs.
pub fn engine() -> &'static softiommu_engine::api::Engine {
    static ENGINE: std::sync::OnceLock<softiommu_engine::api::Engine> = std::sync::OnceLock::new();
    ENGINE.get_or_init(softiommu_engine::api::Engine::new)
}

/// The input, read from the front.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte; `None` at the end.
    pub fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    /// The next `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// A little-endian integer of `n` ≤ 8 bytes.
    pub fn uint(&mut self, n: usize) -> Option<u64> {
        let b = self.bytes(n);
        if b.is_empty() {
            return None;
        }
        Some(
            b.iter()
                .rev()
                .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)),
        )
    }

    /// One of `table`, chosen by the next byte; `None` for an empty table.
    pub fn pick<T: Copy>(&mut self, table: &[T]) -> Option<T> {
        let i = self.byte()? as usize;
        if table.is_empty() {
            return None;
        }
        table.get(i % table.len()).copied()
    }

    /// A length-prefixed run of bytes (one byte of length, up to 255).
    pub fn blob(&mut self) -> &'a [u8] {
        let n = self.byte().unwrap_or(0) as usize;
        self.bytes(n)
    }
}
