//! Source lists read from files, with restic's rules for each flag: `--files-from` (patterns,
//! one a line, expanded like a shell glob), `--files-from-verbatim` (literal paths, one a
//! line), `--files-from-raw` (literal paths, each ended by a NUL byte). Parsing only: the
//! caller reads the bytes (a file, or standard input for `-`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::ops::globs;

/// Lines as Go's `bufio.Scanner` splits them: on `\n`, one `\r` before it dropped, a last
/// line without `\n` kept. A UTF-8 byte-order mark at the start is dropped.
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    body.split(|b| *b == b'\n')
        .filter(move |_| !bytes.is_empty())
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// `--files-from`: each line trimmed of white space; empty lines and lines starting with `#`
/// skipped; each remaining line is a pattern expanded against the file system. Returns the
/// matches, and the patterns that matched nothing (restic warns and goes on).
pub fn files_from(bytes: &[u8]) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let mut out = Vec::new();
    let mut unmatched = Vec::new();
    for line in lines(bytes) {
        let line = line.trim_ascii();
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let pattern = PathBuf::from(OsString::from_vec(line.to_vec()));
        let found = globs::expand(&pattern)?;
        if found.is_empty() {
            unmatched.push(pattern.to_string_lossy().into_owned());
        }
        out.extend(found);
    }
    Ok((out, unmatched))
}

/// `--files-from-verbatim`: every non-empty line is a path, byte for byte.
pub fn files_from_verbatim(bytes: &[u8]) -> Vec<PathBuf> {
    lines(bytes)
        .filter(|l| !l.is_empty())
        .map(|l| PathBuf::from(OsString::from_vec(l.to_vec())))
        .collect()
}

/// `--files-from-raw`: paths each ended by a NUL byte (`find -print0`). An empty name or a
/// missing final NUL is an error, as in restic.
pub fn files_from_raw(bytes: &[u8]) -> Result<Vec<PathBuf>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = bytes.strip_suffix(b"\0") else {
        return Err(Error::InvalidInput(
            "--files-from-raw: the list must end with a NUL byte (use find -print0)".into(),
        ));
    };
    body.split(|b| *b == 0)
        .map(|n| {
            if n.is_empty() {
                Err(Error::InvalidInput(
                    "--files-from-raw: empty file name in the list".into(),
                ))
            } else {
                Ok(PathBuf::from(OsString::from_vec(n.to_vec())))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn verbatim_keeps_bytes_and_skips_empty_lines() {
        let got = files_from_verbatim(b"\xef\xbb\xbf/a b\r\n\n  /c \n/d\xff\n/e");
        let want: Vec<&[u8]> = vec![b"/a b", b"  /c ", b"/d\xff", b"/e"];
        let got: Vec<&[u8]> = got.iter().map(|p| p.as_os_str().as_bytes()).collect();
        assert_eq!(got, want);
        assert!(files_from_verbatim(b"").is_empty());
    }

    #[test]
    fn raw_needs_nul_terminated_names() {
        let got = files_from_raw(b"/a\n b\0/c\0").unwrap();
        assert_eq!(got, vec![PathBuf::from("/a\n b"), PathBuf::from("/c")]);
        assert!(files_from_raw(b"/a\0/b").is_err());
        assert!(files_from_raw(b"/a\0\0").is_err());
        assert!(files_from_raw(b"").unwrap().is_empty());
    }

    #[test]
    fn files_from_skips_comments_and_expands() {
        let d = tempfile::tempdir().unwrap();
        for f in ["x.txt", "y.txt", "z.log"] {
            std::fs::write(d.path().join(f), b"").unwrap();
        }
        let text = format!(
            "# comment\n\n   {0}/*.txt  \n{0}/z.log\n{0}/none*\n",
            d.path().display()
        );
        let (found, unmatched) = files_from(text.as_bytes()).unwrap();
        let want: Vec<PathBuf> = ["x.txt", "y.txt", "z.log"]
            .iter()
            .map(|f| d.path().join(f))
            .collect();
        assert_eq!(found, want);
        assert_eq!(unmatched, vec![format!("{}/none*", d.path().display())]);
    }
}
