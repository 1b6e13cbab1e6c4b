//! The zip side of [`super::dump`]: a streamed zip (data descriptors, no seeking, so it can go
//! to a pipe), file content deflated, modes in the Unix external attributes (set-id and sticky
//! bits included), modification times in this machine's zone as zip's DOS times are local.
//! Zip names are text: a name that is not UTF-8 is written with U+FFFD in place of bad bytes.

use std::io::{Read, Write};
use std::path::Path;

use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{CompressionMethod, ZipWriter};

use super::dump::{Sink, mtime_secs};
use crate::format::tree::{Node, NodeKind};

pub(crate) struct ZipSink<'w> {
    z: Option<ZipWriter<StreamWriter<&'w mut dyn Write>>>,
}

impl<'w> ZipSink<'w> {
    pub(crate) fn new(out: &'w mut dyn Write) -> Self {
        Self {
            z: Some(ZipWriter::new_stream(out)),
        }
    }
}

/// A DOS time for the node's mtime (zip cannot say before 1980 or after 2107: clamped).
fn dos_time(n: &Node) -> zip::DateTime {
    let secs = i64::try_from(mtime_secs(n)).unwrap_or(i64::MAX);
    let civil = jiff::Timestamp::from_second(secs)
        .map(|t| t.to_zoned(jiff::tz::TimeZone::system()).datetime())
        .ok();
    civil
        .and_then(|c| {
            let year = u16::try_from(c.year()).ok()?;
            zip::DateTime::from_date_and_time(
                year,
                u8::try_from(c.month()).ok()?,
                u8::try_from(c.day()).ok()?,
                u8::try_from(c.hour()).ok()?,
                u8::try_from(c.minute()).ok()?,
                u8::try_from(c.second()).ok()?,
            )
            .ok()
        })
        .unwrap_or_default()
}

fn zip_err(e: zip::result::ZipError) -> std::io::Error {
    match e {
        zip::result::ZipError::Io(e) => e,
        other => std::io::Error::other(other),
    }
}

impl Sink for ZipSink<'_> {
    fn entry(
        &mut self,
        name: &Path,
        node: &Node,
        content: Option<&mut dyn Read>,
    ) -> std::io::Result<()> {
        let z = self
            .z
            .as_mut()
            .ok_or_else(|| std::io::Error::other("zip archive already finished"))?;
        let name = name.to_string_lossy().into_owned();
        let base = SimpleFileOptions::default().last_modified_time(dos_time(node));
        match &node.kind {
            NodeKind::File { size, .. } => {
                let opts = base
                    .compression_method(CompressionMethod::Deflated)
                    .large_file(*size >= u64::from(u32::MAX))
                    .external_attributes((0o100000 | (node.mode & 0o7777)) << 16);
                z.start_file(name, opts).map_err(zip_err)?;
                if let Some(c) = content {
                    std::io::copy(c, z)?;
                }
                Ok(())
            }
            // External attributes rather than `unix_permissions`, which keeps only 0o777.
            NodeKind::Dir { .. } | NodeKind::DirParts { .. } => z
                .add_directory(
                    name,
                    base.external_attributes((0o040000 | (node.mode & 0o7777)) << 16),
                )
                .map_err(zip_err),
            NodeKind::Symlink { target } => z
                .add_symlink(
                    name,
                    String::from_utf8_lossy(target),
                    base.unix_permissions(node.mode),
                )
                .map_err(zip_err),
            NodeKind::Fifo => {
                let opts = base
                    .compression_method(CompressionMethod::Stored)
                    .external_attributes((0o010000 | (node.mode & 0o7777)) << 16);
                z.start_file(name, opts).map_err(zip_err)
            }
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if let Some(z) = self.z.take() {
            let mut w = z.finish().map_err(zip_err)?;
            w.flush()?;
        }
        Ok(())
    }
}
