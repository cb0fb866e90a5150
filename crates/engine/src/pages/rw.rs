//! Reading and writing the memory behind `Pages` (accesses, emulated
//! device DMA on pinned pages): at the source while it is there, and
//! through the pinned frames' backing once it is not.

use super::*;

impl Pages {
    /// Reads bytes at byte offset `offset` of the source; pinned pages stay
    /// readable after their process is gone.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let at = self.source_at(offset)?;
        let direct = match &self.source {
            Source::User { mm, .. } => mm.read(at, buf),
            Source::File { file, .. } => file.read_at(at, buf),
        };
        direct.or_else(|_| {
            self.through_frames(offset, buf.len(), |backing, pos, range| {
                let dst = &mut buf[range];
                match backing {
                    Backing::Memory { mm, va_delta } => mm.read(pos.wrapping_add(*va_delta), dst),
                    Backing::File(file) => file.read_at(pos, dst),
                }
            })
        })
    }

    /// Writes bytes at byte offset `offset` of the source; pinned pages stay
    /// writable after their process is gone.
    pub fn write(&self, offset: u64, buf: &[u8]) -> Result<()> {
        let at = self.source_at(offset)?;
        let direct = match &self.source {
            Source::User { mm, .. } => mm.write(at, buf),
            Source::File { file, .. } => file.write_at(at, buf),
        };
        direct.or_else(|_| {
            self.through_frames(offset, buf.len(), |backing, pos, range| {
                let src = &buf[range];
                match backing {
                    Backing::Memory { mm, va_delta } => mm.write(pos.wrapping_add(*va_delta), src),
                    Backing::File(file) => file.write_at(pos, src),
                }
            })
        })
    }

    /// Where byte `offset` of the pages lies in the source (`EFAULT` past
    /// the end of the address space).
    fn source_at(&self, offset: u64) -> Result<u64> {
        self.source.base().checked_add(offset).ok_or(Errno::EFAULT)
    }

    /// Runs `f` on each page piece of `[offset, offset + len)` through the
    /// backing its pinned frame records (`EFAULT` for an unpinned page).
    fn through_frames(
        &self,
        offset: u64,
        len: usize,
        mut f: impl FnMut(&Backing, u64, std::ops::Range<usize>) -> Result<()>,
    ) -> Result<()> {
        let mut done = 0usize;
        while done < len {
            let byte = offset + done as u64;
            let n = ((PAGE_SIZE - byte % PAGE_SIZE) as usize).min(len - done);
            let pa = self.address(byte / PAGE_SIZE).ok_or(Errno::EFAULT)? + byte % PAGE_SIZE;
            let resolved = self.shared.phys.locked().resolve(pa);
            let (backing, pos) = resolved.ok_or(Errno::EFAULT)?;
            f(&backing, pos, done..done + n)?;
            done += n;
        }
        Ok(())
    }
}
