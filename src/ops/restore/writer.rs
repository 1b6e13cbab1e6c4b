//! Positioned writes of a restored file's chunks, in any order, through the page cache or,
//! with `--direct-io`, bypassing it (`O_DIRECT`) where the filesystem allows it.
//!
//! Why both: `O_DIRECT` leaves what a running server caches in place and skips the first-touch
//! cost of a fresh VM's memory (3.5 kernel CPU-s per GiB on the 2-core VM of
//! docs/PERFORMANCE.md), but each write then waits for the device; once the machine's memory
//! has been touched, the page cache is faster (a 1.26 GB restore 2.0 s against 3.3 s there).
//! docs/DESIGN.md "Restore pipeline" has the figures.
//!
//! `O_DIRECT` wants offsets, lengths and buffer addresses aligned to the logical block size,
//! while chunks start and end anywhere. So each chunk's whole blocks are copied into an aligned
//! buffer and written at once; the partial blocks at its two ends are assembled in a small map
//! shared by the file's writers until their neighbours arrive, then written. The file's last
//! block is written whole, padded with zeros, and the file is cut back to its size at the end.
//! A filesystem that refuses `O_DIRECT` (when it is switched on, or at a write) gets ordinary
//! positioned writes; so do small files (a device round trip each would cost more than the
//! copy) and file systems other than ext4, XFS and Btrfs ([`suits_direct`]: on NFS or FUSE
//! each direct write is a synchronous round trip). All-zero blocks are not written: the file
//! was sized first, so they stay holes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{FcntlArg, OFlag, fcntl};

/// Alignment of `O_DIRECT` offsets, lengths and buffers: 4 KiB suits devices with 512-byte and
/// 4 KiB logical blocks; anything stricter makes the write fail with `EINVAL`, and the file
/// falls back to ordinary writes.
pub const BLOCK: u64 = 4096;
const B: usize = BLOCK as usize;

/// Files at least this large are written with `O_DIRECT`.
pub const DIRECT_MIN: u64 = 256 * 1024;

/// Whether files below `dir` should be written with `O_DIRECT`: only on local block-device
/// file systems known to handle it well (ext2/3/4, XFS, Btrfs). On network and FUSE file
/// systems every direct write is a synchronous round trip, far slower than the page cache;
/// on others, support varies.
pub fn suits_direct(dir: &std::path::Path) -> bool {
    use nix::sys::statfs::{BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC, statfs};
    statfs(dir).is_ok_and(|s| {
        let t = s.filesystem_type();
        t == EXT4_SUPER_MAGIC || t == XFS_SUPER_MAGIC || t == BTRFS_SUPER_MAGIC
    })
}

/// A zeroed buffer of `len` bytes starting at a [`BLOCK`]-aligned address (over-allocated by a
/// block, so no `unsafe` is needed to align it).
struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        let raw = vec![0u8; len + B];
        let addr = raw.as_ptr() as usize;
        let start = (B - addr % B) % B;
        Self { raw, start, len }
    }

    fn bytes(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

thread_local! {
    /// Each thread's staging buffer for a chunk's whole blocks, grown to the largest chunk seen.
    static STAGING: RefCell<AlignedBuf> = RefCell::new(AlignedBuf::new(0));
}

/// A block of the file of which only some bytes have arrived.
struct Partial {
    buf: AlignedBuf,
    filled: u64,
}

/// Writes one file's content, given as byte ranges in any order and from several threads.
pub struct FileWriter {
    file: File,
    size: u64,
    /// Block size of the aligned writes: [`BLOCK`], except in tests.
    block: u64,
    /// Writes go through aligned blocks (chosen at creation).
    aligned: bool,
    /// The descriptor has `O_DIRECT` on (cleared if the filesystem refuses a direct write).
    direct: AtomicBool,
    /// Held while switching `O_DIRECT` off ([`FileWriter::fall_back`]).
    fallback: Mutex<()>,
    partial: Mutex<HashMap<u64, Partial>>,
}

fn nonzero(b: &[u8]) -> bool {
    b.iter().any(|&x| x != 0)
}

impl FileWriter {
    /// Takes a new, empty `file` that will hold `size` bytes and sizes it (unwritten ranges
    /// are holes). `direct` asks for `O_DIRECT`, which is used only if `size` is at least
    /// [`DIRECT_MIN`] and the filesystem accepts it.
    pub fn new(file: File, size: u64, direct: bool) -> io::Result<Self> {
        Self::with_block(file, size, direct, BLOCK)
    }

    /// [`FileWriter::new`] with another block size: tests use one the device refuses, to
    /// drive the fallback to ordinary writes. `block` must divide [`BLOCK`].
    fn with_block(file: File, size: u64, direct: bool, block: u64) -> io::Result<Self> {
        file.set_len(size)?;
        let aligned = direct && size >= DIRECT_MIN && enable_direct(&file);
        Ok(Self {
            file,
            size,
            block,
            aligned,
            direct: AtomicBool::new(aligned),
            fallback: Mutex::new(()),
            partial: Mutex::new(HashMap::new()),
        })
    }

    /// Whether writes bypass the page cache.
    #[cfg(test)]
    pub fn is_direct(&self) -> bool {
        self.direct.load(Ordering::Acquire)
    }

    /// Writes `data` at `off`. The ranges given over the writer's life must not overlap and
    /// must lie within the file.
    pub fn write_at(&self, data: &[u8], off: u64) -> io::Result<()> {
        let end = off + data.len() as u64;
        if end > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunk extends past the end of the file",
            ));
        }
        if data.is_empty() {
            return Ok(());
        }
        if !self.aligned {
            return if nonzero(data) {
                self.file.write_all_at(data, off)
            } else {
                Ok(())
            };
        }
        // Whole blocks: those the range covers entirely; the file's last block counts as
        // whole when the range reaches the end of the file.
        let first = off.div_ceil(self.block);
        let last = if end == self.size {
            end.div_ceil(self.block)
        } else {
            end / self.block
        };
        if first >= last {
            return self.add_fragments(data, off);
        }
        let (lo, hi) = (first * self.block, (last * self.block).min(end));
        self.add_fragments(&data[..(lo - off) as usize], off)?;
        self.add_fragments(&data[(hi - off) as usize..], hi)?;
        let inner = &data[(lo - off) as usize..(hi - off) as usize];
        if !nonzero(inner) {
            return Ok(());
        }
        let span = ((last - first) * self.block) as usize;
        STAGING.with(|cell| {
            let mut staging = cell.borrow_mut();
            if staging.len < span {
                *staging = AlignedBuf::new(span);
            }
            let buf = &mut staging.bytes_mut()[..span];
            buf[..inner.len()].copy_from_slice(inner);
            buf[inner.len()..].fill(0);
            self.write_block_aligned(buf, lo)
        })
    }

    /// Adds bytes that cover parts of blocks; writes each block its last bytes complete.
    fn add_fragments(&self, mut data: &[u8], mut off: u64) -> io::Result<()> {
        while !data.is_empty() {
            let block = off / self.block;
            let pos = (off % self.block) as usize;
            let n = data.len().min(self.block as usize - pos);
            let expected = (self.size - block * self.block).min(self.block);
            let complete = {
                let mut map = self
                    .partial
                    .lock()
                    .map_err(|_| io::Error::other("a restore thread panicked"))?;
                let p = map.entry(block).or_insert_with(|| Partial {
                    buf: AlignedBuf::new(self.block as usize),
                    filled: 0,
                });
                p.buf.bytes_mut()[pos..pos + n].copy_from_slice(&data[..n]);
                p.filled += n as u64;
                if p.filled > expected {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "chunks overlap in the file",
                    ));
                }
                if p.filled == expected {
                    map.remove(&block)
                } else {
                    None
                }
            };
            if let Some(p) = complete
                && nonzero(p.buf.bytes())
            {
                self.write_block_aligned(p.buf.bytes(), block * self.block)?;
            }
            data = &data[n..];
            off += n as u64;
        }
        Ok(())
    }

    /// Writes an aligned buffer at an aligned offset; if the filesystem refuses the direct
    /// write, switches the file to ordinary writes and writes it that way.
    fn write_block_aligned(&self, buf: &[u8], off: u64) -> io::Result<()> {
        if self.direct.load(Ordering::Acquire) {
            match self.file.write_all_at(buf, off) {
                Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => self.fall_back()?,
                r => return r,
            }
        }
        self.file.write_all_at(buf, off)
    }

    /// Turns `O_DIRECT` off for good. The flag is cleared on the descriptor *before*
    /// [`FileWriter::direct`] says so (release/acquire): a thread that sees `false` writes
    /// through a descriptor that is already buffered. Clearing first and announcing after,
    /// under one lock, is what makes the switch safe across threads; announcing first let
    /// another thread's ordinary write reach a still-direct descriptor and fail with `EINVAL`.
    fn fall_back(&self) -> io::Result<()> {
        let _one_at_a_time = self
            .fallback
            .lock()
            .map_err(|_| io::Error::other("a restore thread panicked"))?;
        if self.direct.load(Ordering::Acquire) {
            disable_direct(&self.file)?;
            self.direct.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Checks that every byte arrived and cuts the padding of the last block.
    pub fn finish(self) -> io::Result<()> {
        let missing = self
            .partial
            .lock()
            .map_err(|_| io::Error::other("a restore thread panicked"))?
            .len();
        if missing != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{missing} blocks of the file were never completed"),
            ));
        }
        // Only aligned writes pad the last block past the end; an ordinary file already has
        // its size from `new` (a truncate per file is a syscall and an inode update each).
        if self.aligned && !self.size.is_multiple_of(self.block) {
            self.file.set_len(self.size)?;
        }
        Ok(())
    }
}

/// Switches `O_DIRECT` on; false if the filesystem does not support it.
fn enable_direct(file: &File) -> bool {
    let Ok(bits) = fcntl(file, FcntlArg::F_GETFL) else {
        return false;
    };
    let flags = OFlag::from_bits_truncate(bits);
    fcntl(file, FcntlArg::F_SETFL(flags | OFlag::O_DIRECT)).is_ok()
}

fn disable_direct(file: &File) -> io::Result<()> {
    let bits = fcntl(file, FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = OFlag::from_bits_truncate(bits) - OFlag::O_DIRECT;
    fcntl(file, FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fs::OpenOptions;

    /// A directory on the disk the crate lives on: `/tmp` may be a tmpfs, which need not take
    /// `O_DIRECT`.
    fn test_dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(".test-writer")
            .tempdir_in(env!("CARGO_MANIFEST_DIR"))
            .unwrap()
    }

    fn new_file(dir: &tempfile::TempDir) -> (std::path::PathBuf, File) {
        let path = dir.path().join("f");
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        (path, file)
    }

    /// Writes `content` cut at `cuts`, the pieces in the order given by `order`, and returns
    /// what the file holds and whether it went direct.
    fn write_pieces(
        content: &[u8],
        cuts: &[usize],
        order: &[usize],
        direct: bool,
    ) -> (Vec<u8>, bool) {
        let (got, went, _) = write_pieces_in_blocks(content, cuts, order, direct, BLOCK);
        (got, went)
    }

    /// [`write_pieces`] with a block size; also returns whether the file was still direct at
    /// the end.
    fn write_pieces_in_blocks(
        content: &[u8],
        cuts: &[usize],
        order: &[usize],
        direct: bool,
        block: u64,
    ) -> (Vec<u8>, bool, bool) {
        let dir = test_dir();
        let (path, file) = new_file(&dir);
        let w = FileWriter::with_block(file, content.len() as u64, direct, block).unwrap();
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().copied().filter(|&c| c > 0 && c < content.len()));
        bounds.push(content.len());
        bounds.sort_unstable();
        bounds.dedup();
        let pieces: Vec<(usize, usize)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
        let mut idx: Vec<usize> = (0..pieces.len()).collect();
        idx.sort_by_key(|&i| order.get(i).copied().unwrap_or(i));
        let went_direct = w.is_direct();
        std::thread::scope(|s| {
            for part in idx.chunks(idx.len().div_ceil(3).max(1)) {
                let w = &w;
                let pieces = &pieces;
                s.spawn(move || {
                    for &i in part {
                        let (a, b) = pieces[i];
                        w.write_at(&content[a..b], a as u64).unwrap();
                    }
                });
            }
        });
        let direct_at_end = w.is_direct();
        w.finish().unwrap();
        (std::fs::read(&path).unwrap(), went_direct, direct_at_end)
    }

    fn sample(len: usize, zero_from: usize, zero_to: usize) -> Vec<u8> {
        (0..len)
            .map(|i| {
                if (zero_from..zero_to).contains(&i) {
                    0
                } else {
                    (i * 7 % 251) as u8 + 1
                }
            })
            .collect()
    }

    #[test]
    fn direct_and_buffered_write_the_same_bytes() {
        let content = sample(1_000_003, 300_000, 420_000);
        let cuts = [
            1, 4095, 4096, 4097, 5000, 131_072, 299_999, 420_001, 999_999,
        ];
        let order: Vec<usize> = (0..10).rev().collect();
        for direct in [true, false] {
            let (got, went) = write_pieces(&content, &cuts, &order, direct);
            if direct && !went {
                eprintln!(
                    "the filesystem of {} refuses O_DIRECT: tested the fallback",
                    env!("CARGO_MANIFEST_DIR")
                );
            }
            assert!(direct || !went);
            assert_eq!(got.len(), content.len());
            assert!(got == content, "content differs (direct: {direct})");
        }
    }

    #[test]
    fn a_refused_direct_write_falls_back_to_ordinary_writes() {
        // 256-byte blocks: no block device takes O_DIRECT writes at odd multiples of 256
        // bytes, so such a write fails with EINVAL and the file goes on with ordinary writes.
        let content = sample(700_001, 10_000, 20_000);
        let cuts = [256, 1000, 4096 + 256, 65_536, 300_000, 512_256];
        let (got, went, still) = write_pieces_in_blocks(&content, &cuts, &[], true, 256);
        assert!(got == content);
        if went {
            assert!(
                !still,
                "a misaligned direct write did not switch the file to ordinary writes"
            );
        }
    }

    /// Regression: the switch to ordinary writes raced across threads; a thread that saw the
    /// switch announced could write through the still-direct descriptor and get `EINVAL`.
    #[test]
    fn the_fallback_to_ordinary_writes_is_safe_across_threads() {
        let content = sample(2_000_000, 0, 0);
        let cuts: Vec<usize> = (1..200).map(|i| i * 10_000 + 256).collect();
        for _ in 0..10 {
            let dir = test_dir();
            let (path, file) = new_file(&dir);
            let w = FileWriter::with_block(file, content.len() as u64, true, 256).unwrap();
            let mut bounds = vec![0];
            bounds.extend(cuts.iter().copied());
            bounds.push(content.len());
            let pieces: Vec<(usize, usize)> = bounds.windows(2).map(|b| (b[0], b[1])).collect();
            std::thread::scope(|s| {
                for t in 0..8 {
                    let (w, pieces, content) = (&w, &pieces, &content);
                    s.spawn(move || {
                        for &(a, b) in pieces.iter().skip(t).step_by(8) {
                            w.write_at(&content[a..b], a as u64).unwrap();
                        }
                    });
                }
            });
            w.finish().unwrap();
            assert!(std::fs::read(&path).unwrap() == content);
        }
    }

    #[test]
    fn only_local_block_file_systems_go_direct() {
        assert!(!suits_direct(std::path::Path::new("/proc")));
        assert!(!suits_direct(std::path::Path::new("/no/such/dir")));
    }

    #[test]
    fn small_files_are_buffered() {
        let content = sample(DIRECT_MIN as usize - 1, 0, 0);
        let (got, went) = write_pieces(&content, &[100, 5000], &[], true);
        assert!(!went);
        assert!(got == content);
    }

    #[test]
    fn overlapping_or_outside_ranges_are_errors() {
        let dir = test_dir();
        let (_, file) = new_file(&dir);
        let w = FileWriter::new(file, 1 << 20, true).unwrap();
        assert!(w.write_at(&[1; 10], (1 << 20) - 5).is_err());
        w.write_at(&[1; 100], 10).unwrap();
        assert!(w.write_at(&[1; 4000], 50).is_err());
        assert!(w.finish().is_err(), "an incomplete block is reported");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_cuts_in_any_order(
            len in 1usize..600_000,
            cuts in proptest::collection::vec(0usize..600_000, 0..40),
            order in proptest::collection::vec(0usize..100, 0..41),
            zeros in (0usize..600_000, 0usize..200_000),
        ) {
            let content = sample(len, zeros.0, zeros.0 + zeros.1);
            let (got, _) = write_pieces(&content, &cuts, &order, true);
            prop_assert!(got == content);
        }
    }
}
