//! `cat TYPE ID`: one repository object, decoded, for inspection, as restic's `cat`: JSON for
//! structured objects (config, snapshot, index, key, pack header, tree), the plaintext bytes
//! for a blob. Ids are unique prefixes. Secrets are never printed: `key` shows only who made
//! the key, when, and its KDF cost (not the salt or the wrapped master key), `config` holds no
//! key material, and there is no `masterkey` type.

use anyhow::{Result, anyhow, bail};
use cista::backend::FileType;
use cista::format::key::{KeyFile, MAX_KEY_FILE_LEN};
use cista::format::pack::{BlobType, PackEntry};
use cista::format::tree::{Node, NodeKind};
use cista::id::{BlobId, Id, PackId, SnapshotId};
use cista::repo::{Index, Repository};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use super::{Env, code, output};

#[derive(Debug, Args)]
pub struct CatArgs {
    /// What to print.
    #[arg(value_enum)]
    what: CatType,
    /// The object's id or a unique prefix (not for `config`).
    id: Option<String>,
}

/// restic's `cat` types, less `masterkey` and `lock`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum CatType {
    Config,
    Snapshot,
    Index,
    Key,
    Pack,
    Blob,
    Tree,
}

pub fn run(env: &Env, a: CatArgs) -> Result<u8> {
    let session = env.session(cista::format::lock::LockMode::Shared)?;
    let repo = session.repo().clone();
    let need_id = || {
        a.id.as_deref()
            .ok_or_else(|| anyhow!("`cat {:?}` needs an id", a.what))
    };
    let mut out = output::Out::new();
    match a.what {
        CatType::Config => {
            if a.id.is_some() {
                bail!("`cat config` takes no id");
            }
            let c = repo.config();
            // restic's `cat config` prints `version` (its repository format) and `id`.
            out.line(pretty(&json!({
                "version": c.format_version,
                "features": c.features,
                "id": repo.id_hex(),
                "chunker": {"min": c.chunker.min, "avg": c.chunker.avg, "max": c.chunker.max},
                "pack_size": c.pack_size,
                "compression_level": c.compression_level,
            }))?)?;
        }
        CatType::Snapshot => {
            let id = SnapshotId(unique(&repo, FileType::Snapshot, need_id()?)?);
            let s = repo.load_snapshot(&id)?;
            out.line(pretty(&output::snapshot_json(&id, &s))?)?;
        }
        CatType::Index => {
            let (id, size) = unique_sized(&repo, FileType::Index, need_id()?)?;
            let f = repo.load_index_file(&id, Some(size))?;
            out.line(pretty(&json!({
                "supersedes": f.supersedes.iter().map(|s| s.to_hex()).collect::<Vec<_>>(),
                "packs": f.packs.iter().map(|p| json!({
                    "id": p.id.to_hex(),
                    "blobs": p.blobs.iter().map(entry_json).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            }))?)?;
        }
        CatType::Key => {
            let prefix = need_id()?;
            let (id, len) = unique_sized(&repo, FileType::Key, prefix)?;
            if len > MAX_KEY_FILE_LEN {
                bail!("key file {id} is {len} bytes, more than a key file can be: it is damaged");
            }
            let bytes = repo.backend().read(FileType::Key, &id)?;
            let k = KeyFile::decode(&bytes)
                .map_err(|e| anyhow!("key file {id} cannot be read: {e}"))?;
            // Deliberately not printed: the salt and the wrapped master key.
            out.line(pretty(&json!({
                "id": id.to_hex(),
                "current": id == repo.key_id().0,
                "created": output::rfc3339(k.created_unix_ns, 0),
                "hostname": k.hostname,
                "username": k.username,
                "kdf": {"algorithm": "argon2id", "memory_kib": k.kdf.m_kib, "iterations": k.kdf.t, "parallelism": k.kdf.p},
            }))?)?;
        }
        CatType::Pack => {
            let (id, len) = unique_sized(&repo, FileType::Pack, need_id()?)?;
            let h = repo.read_pack_header(&PackId(id), len)?;
            out.line(pretty(&json!({
                "id": id.to_hex(),
                "size": len,
                "blobs": h.entries.iter().map(entry_json).collect::<Vec<_>>(),
            }))?)?;
        }
        CatType::Blob | CatType::Tree => {
            let index = repo.load_index()?;
            let want = match a.what {
                CatType::Tree => BlobType::Tree,
                _ => BlobType::Data,
            };
            let id = unique_blob(&index, need_id()?, want)?;
            if want == BlobType::Tree {
                let t = repo.read_tree(&index, &id)?;
                let nodes: Vec<Value> = t.nodes.iter().map(tree_node_json).collect();
                out.line(pretty(&json!({ "nodes": nodes }))?)?;
            } else {
                let bytes = repo.read_blob(&index, &id)?;
                std::io::Write::write_all(&mut out, &bytes)?;
            }
        }
    }
    out.finish()?;
    Ok(code::OK)
}

fn pretty(v: &Value) -> Result<String> {
    Ok(serde_json::to_string_pretty(v)?)
}

/// restic's index/pack blob entry fields.
fn entry_json(e: &PackEntry) -> Value {
    json!({
        "id": e.id.to_hex(),
        "type": match e.blob_type { BlobType::Data => "data", BlobType::Tree => "tree" },
        "offset": e.offset,
        "length": e.length,
        "uncompressed_length": e.raw_len,
    })
}

/// A tree node as restic's tree JSON has it (content ids, subtree id, Go mode, times).
fn tree_node_json(n: &Node) -> Value {
    let mut v = json!({
        "name": String::from_utf8_lossy(&n.name),
        "type": output::node_type(n),
        "mode": output::go_file_mode(n),
        "mtime": output::local_time(n.mtime_ns),
        "atime": output::local_time(n.atime_ns),
        "ctime": output::local_time(n.ctime_ns),
        "uid": n.uid,
        "gid": n.gid,
        "inode": n.inode,
        "device_id": n.device,
        "links": n.links,
        "extended_attributes": n.xattrs.iter().map(|x| json!({
            "name": String::from_utf8_lossy(&x.name),
            "value": hex::encode(&x.value),
        })).collect::<Vec<_>>(),
    });
    match &n.kind {
        NodeKind::File { size, content } => {
            v["size"] = json!(size);
            v["content"] = json!(content.iter().map(|c| c.to_hex()).collect::<Vec<_>>());
        }
        NodeKind::Dir { subtree } => v["subtree"] = json!(subtree.to_hex()),
        NodeKind::DirParts { parts } => {
            v["subtree_parts"] = json!(parts.iter().map(|p| p.to_hex()).collect::<Vec<_>>());
        }
        NodeKind::Symlink { target } => v["linktarget"] = json!(String::from_utf8_lossy(target)),
        NodeKind::Fifo => {}
    }
    v
}

fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{prefix:?} is not an id: give hex digits (a unique prefix is enough)");
    }
    Ok(())
}

/// The one stored file of type `t` whose id starts with `prefix`, with its size.
fn unique_sized(repo: &Repository, t: FileType, prefix: &str) -> Result<(Id, u64)> {
    check_prefix(prefix)?;
    let m: Vec<(Id, u64)> = repo
        .backend()
        .list(t)?
        .into_iter()
        .filter(|(id, _)| id.hex_starts_with(prefix))
        .collect();
    match m.as_slice() {
        [one] => Ok(*one),
        [] => bail!("no file in {}/ matches {prefix:?}", t.dir()),
        _ => bail!(
            "{prefix:?} matches {} files in {}/: give more digits",
            m.len(),
            t.dir()
        ),
    }
}

fn unique(repo: &Repository, t: FileType, prefix: &str) -> Result<Id> {
    Ok(unique_sized(repo, t, prefix)?.0)
}

/// The one indexed blob of type `want` whose id starts with `prefix`.
fn unique_blob(index: &Index, prefix: &str, want: BlobType) -> Result<BlobId> {
    check_prefix(prefix)?;
    let mut found: Option<BlobId> = None;
    for loc in index.iter() {
        if loc.entry.blob_type == want && loc.entry.id.0.hex_starts_with(prefix) {
            if found.is_some_and(|f| f != loc.entry.id) {
                bail!("{prefix:?} matches more than one blob: give more digits");
            }
            found = Some(loc.entry.id);
        }
    }
    let kind = match want {
        BlobType::Data => "data blob",
        BlobType::Tree => "tree",
    };
    found.ok_or_else(|| anyhow!("no {kind} in the index matches {prefix:?}"))
}
