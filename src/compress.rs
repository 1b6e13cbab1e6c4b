//! zstd compression of blob and metadata payloads, with size caps on the way back.
//!
//! A payload is compressed only when that saves space; decompression is bounded by the length
//! the index or object cap allows, so a hostile zstd frame cannot balloon memory.

use std::cell::RefCell;

use crate::format::FormatError;

/// Compressed form of `data` if it is smaller by at least 1/64 (otherwise storing it raw is
/// cheaper to read back and leaks no more).
pub fn compress(data: &[u8], level: i32) -> Option<Vec<u8>> {
    with_compressed(data, level, |c| c.map(<[u8]>::to_vec))
}

thread_local! {
    /// Per-thread zstd context and output buffer. A level-3 context allocates several MiB;
    /// creating one per chunk churned the allocator enough to raise a backup's peak memory,
    /// so each worker thread keeps one (a cache, not shared state: nothing crosses threads).
    static SCRATCH: RefCell<Option<(i32, zstd::bulk::Compressor<'static>, Vec<u8>)>> = const { RefCell::new(None) };
    /// A level-1 context for the incompressibility trial.
    static TRIAL: RefCell<Option<(zstd::bulk::Compressor<'static>, Vec<u8>)>> = const { RefCell::new(None) };
}

/// Bytes sampled from the start of a blob to decide whether compressing it is worthwhile.
pub const TRIAL_LEN: usize = 16 << 10;

/// Whether a cheap trial (level 1 on the first [`TRIAL_LEN`] bytes) says `data` is
/// incompressible: encrypted uploads, media and archives are, and compressing them whole at the
/// configured level costs CPU for nothing. A sample that saves less than 3% condemns the blob.
pub fn looks_incompressible(data: &[u8]) -> bool {
    if data.len() < 4 * TRIAL_LEN {
        return false;
    }
    let sample = &data[..TRIAL_LEN];
    TRIAL.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return false;
        };
        if slot.is_none() {
            match zstd::bulk::Compressor::new(1) {
                Ok(c) => *slot = Some((c, Vec::new())),
                Err(_) => return false,
            }
        }
        let Some((ctx, buf)) = slot.as_mut() else {
            return false;
        };
        let limit = TRIAL_LEN - TRIAL_LEN * 3 / 100;
        buf.clear();
        buf.resize(limit, 0);
        ctx.compress_to_buffer(sample, &mut buf[..]).is_err()
    })
}

/// The length a compressed form of `data` must stay under to be kept (it saves 1/64), or
/// `None` when compressing is not worth trying: content under 64 bytes, or content the
/// trial finds incompressible.
pub fn kept_below(data: &[u8]) -> Option<usize> {
    if data.len() < 64 || looks_incompressible(data) {
        return None;
    }
    Some(data.len() - data.len() / 64)
}

/// A compression context for cista's `level`: zstd's own parameters for that level, except
/// where [`tuned`] overrides them.
fn compressor(level: i32) -> std::io::Result<zstd::bulk::Compressor<'static>> {
    let mut c = zstd::bulk::Compressor::new(level)?;
    for p in tuned(level) {
        c.set_parameter(*p)?;
    }
    Ok(c)
}

/// Where cista's level differs from zstd's (docs/DESIGN.md, "Compression level"). Level 2,
/// the default, uses zstd's double-fast match finder and 5-byte minimum matches (zstd's
/// level 3 choices) with level 2's smaller tables and window: on a Rust toolchain's binaries
/// it stores 2.3% less than plain level 2 for 19% more compression CPU, where level 3
/// costs 42% more; on dump text and uploads it stores the same. Only the writer's choice:
/// the frames are ordinary zstd frames, read by any decoder.
pub fn tuned(level: i32) -> &'static [zstd::zstd_safe::CParameter] {
    use zstd::zstd_safe::{CParameter, Strategy};
    const LEVEL_2: &[CParameter] = &[
        CParameter::Strategy(Strategy::ZSTD_dfast),
        CParameter::MinMatch(5),
    ];
    match level {
        2 => LEVEL_2,
        _ => &[],
    }
}

/// Calls `f` with the compressed form of `data` (as [`compress`] decides), without
/// allocating per call: the context and buffer are reused by the calling thread.
pub fn with_compressed<R>(data: &[u8], level: i32, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
    let Some(limit) = kept_below(data) else {
        return f(None);
    };
    SCRATCH.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            // Re-entered on this thread (cannot happen in cista's pipeline): do it uncached.
            let mut out = Vec::with_capacity(limit);
            let ok = compressor(level)
                .and_then(|mut c| c.compress_to_buffer(data, &mut out))
                .is_ok();
            return f(ok.then_some(&out[..]));
        };
        if slot.as_ref().is_none_or(|(l, _, _)| *l != level) {
            match compressor(level) {
                Ok(c) => *slot = Some((level, c, Vec::new())),
                Err(_) => return f(None),
            }
        }
        let Some((_, ctx, buf)) = slot.as_mut() else {
            return f(None);
        };
        buf.clear();
        // `compress_to_buffer` fails when the output would not fit in `limit` bytes: exactly
        // "does not save space".
        buf.resize(limit, 0);
        let res = ctx.compress_to_buffer(data, &mut buf[..]);
        match res {
            Ok(n) => {
                buf.truncate(n);
                f(Some(&buf[..]))
            }
            Err(_) => f(None),
        }
    })
}

thread_local! {
    /// Per-thread zstd decompression context: a restore opens every chunk, and a fresh
    /// context per chunk is an allocation (and its page faults) per chunk.
    static DCTX: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// [`decompress_exact`] into `out` (cleared first), reusing its allocation and the thread's
/// context. The frame can write at most `out`'s capacity, which is grown to `expected` and
/// never past what an earlier call allowed, and anything but exactly `expected` bytes fails.
pub fn decompress_exact_into(
    frame: &[u8],
    expected: usize,
    out: &mut Vec<u8>,
    what: &'static str,
) -> Result<(), FormatError> {
    out.clear();
    out.reserve(expected);
    let bad = |e: std::io::Error| FormatError::malformed(what, format!("bad zstd frame: {e}"));
    let n = DCTX.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            if slot.is_none() {
                *slot = Some(zstd::bulk::Decompressor::new().map_err(bad)?);
            }
            match slot.as_mut() {
                Some(d) => d.decompress_to_buffer(frame, out).map_err(bad),
                None => Err(FormatError::malformed(what, "no zstd context")),
            }
        }
        // Re-entered on this thread: an uncached context.
        Err(_) => zstd::bulk::Decompressor::new()
            .and_then(|mut d| d.decompress_to_buffer(frame, out))
            .map_err(bad),
    })?;
    if n != expected || out.len() != expected {
        return Err(FormatError::malformed(
            what,
            "decompressed length differs from the index",
        ));
    }
    Ok(())
}

/// Decompresses one zstd frame that must expand to exactly `expected` bytes (at most `max`).
pub fn decompress_exact(
    frame: &[u8],
    expected: usize,
    what: &'static str,
) -> Result<Vec<u8>, FormatError> {
    let out = zstd::bulk::decompress(frame, expected)
        .map_err(|e| FormatError::malformed(what, format!("bad zstd frame: {e}")))?;
    if out.len() != expected {
        return Err(FormatError::malformed(
            what,
            "decompressed length differs from the index",
        ));
    }
    Ok(out)
}

/// Decompresses one zstd frame of unknown length, refusing output beyond `max` bytes.
pub fn decompress_capped(
    frame: &[u8],
    max: u64,
    what: &'static str,
) -> Result<Vec<u8>, FormatError> {
    let cap = usize::try_from(max).unwrap_or(usize::MAX);
    let size = zstd::zstd_safe::get_frame_content_size(frame)
        .ok()
        .flatten();
    match size {
        Some(n) if n > max => Err(FormatError::TooLarge { what, len: n, max }),
        Some(n) => decompress_exact(frame, n as usize, what),
        None => zstd::bulk::decompress(frame, cap)
            .map_err(|e| FormatError::malformed(what, format!("bad zstd frame: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bytes where every repeat is exactly five long (a word from a small vocabulary, then a
    /// random byte), like the short repeated sequences of machine code.
    fn five_byte_repeats() -> Vec<u8> {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let words: Vec<[u8; 5]> = (0..64)
            .map(|_| {
                let w = next().to_le_bytes();
                [w[0], w[1], w[2], w[3], w[4]]
            })
            .collect();
        let mut out = Vec::new();
        while out.len() < 1 << 20 {
            let r = next();
            out.extend_from_slice(&words[(r % 64) as usize]);
            out.push((r >> 32) as u8);
        }
        out
    }

    #[test]
    fn level_2_finds_the_five_byte_matches_zstds_level_2_misses() {
        let data = five_byte_repeats();
        let ours = compress(&data, 2).expect("compressible");
        let plain = zstd::bulk::compress(&data, 2).expect("zstd");
        assert!(
            ours.len() * 10 < plain.len() * 9,
            "tuned {} vs zstd's level 2 {}",
            ours.len(),
            plain.len()
        );
        assert_eq!(
            decompress_exact(&ours, data.len(), "blob").expect("frame"),
            data
        );
        // Other levels are zstd's own.
        assert!((1..=19).all(|l| tuned(l).is_empty() == (l != 2)));
    }

    #[test]
    fn compresses_text_skips_random() {
        let text = b"INSERT INTO t VALUES (1, 'abc');\n".repeat(1000);
        let c = compress(&text, 3).unwrap();
        assert!(c.len() < text.len() / 10);
        assert_eq!(decompress_exact(&c, text.len(), "x").unwrap(), text);
        assert_eq!(decompress_capped(&c, 1 << 20, "x").unwrap(), text);
        let random: Vec<u8> = (0..10_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let _ = compress(&random, 3); // may or may not compress; must not panic
        assert!(compress(b"short", 3).is_none());
    }

    #[test]
    fn trial_skips_random_keeps_text() {
        let random = crate::format::vectors::samples::pseudo_random(200_000, 1);
        assert!(looks_incompressible(&random));
        assert!(compress(&random, 3).is_none());
        let text = b"INSERT INTO t VALUES (1, 'abc');\n".repeat(10_000);
        assert!(!looks_incompressible(&text));
        // Random start, compressible rest: the trial condemns it (documented trade-off).
        let mut mixed = random[..TRIAL_LEN].to_vec();
        mixed.extend_from_slice(&text);
        assert!(looks_incompressible(&mixed));
        // Small blobs are never condemned by the trial.
        assert!(!looks_incompressible(&random[..TRIAL_LEN * 2]));
    }

    #[test]
    fn fail_bomb_is_refused() {
        let zeros = vec![0u8; 1 << 20];
        let c = compress(&zeros, 3).unwrap();
        assert!(decompress_exact(&c, 1000, "x").is_err());
        assert!(decompress_capped(&c, 1000, "x").is_err());
    }

    proptest! {
        #[test]
        fn decompress_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), n in 0usize..5000) {
            let _ = decompress_exact(&bytes, n, "x");
            let _ = decompress_capped(&bytes, 5000, "x");
        }
    }
}
