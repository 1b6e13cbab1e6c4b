//! Interrupted backups: killed (SIGKILL) or asked to stop (SIGINT) part way, the repository
//! stays consistent, no snapshot appears, and the next backup reuses the uploaded packs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::fixture;
use super::harness::{Repo, num};

const MIB: usize = 1 << 20;

fn big_repo(total: usize) -> (Repo, std::path::PathBuf) {
    let repo = Repo::with_init_args(&[
        "--chunk-sizes",
        "65536,262144,1048576",
        "--pack-size-mib",
        "1",
    ]);
    let src = repo.scratch("src");
    fixture::build_random(&src, 40, total, MIB);
    (repo, src)
}

fn spawn_backup(repo: &Repo, src: &Path) -> Child {
    let mut c = repo.cmd(&["backup".as_ref(), "-q".as_ref(), src.as_os_str()]);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c.spawn().unwrap()
}

/// Waits until `n` packs are stored; panics if the backup ends first.
fn wait_for_packs(repo: &Repo, child: &mut Child, n: usize) {
    let start = Instant::now();
    while repo.files_in("data").len() < n {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("backup ended ({status}) before {n} packs were seen; make the tree bigger");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no packs appeared"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The second backup after an interruption: completes, and stores less than everything.
fn resume(repo: &Repo, src: &Path, total: usize) {
    let s = repo.backup(&[src]);
    assert_eq!(num(&s, "total_bytes_processed"), total as u64);
    let packed = num(&s, "data_added_packed");
    assert!(
        packed < total as u64,
        "uploaded packs were not reused: {packed} of {total} bytes stored again"
    );
    assert_eq!(repo.snapshots(&[]).len(), 1);
    repo.run(&["check", "--read-data"]).ok();
    let file = src.join("d3/f003");
    let r = repo
        .run(&["dump".as_ref(), "latest".as_ref(), file.as_os_str()])
        .ok();
    assert!(
        r.stdout == std::fs::read(&file).unwrap(),
        "dump differs after resume"
    );
}

#[test]
fn killed_backup_leaves_a_consistent_repository() {
    let total = 40 * MIB;
    let (repo, src) = big_repo(total);
    let mut child = spawn_backup(&repo, &src);
    wait_for_packs(&repo, &mut child, 3);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );

    assert!(
        repo.snapshots(&[]).is_empty(),
        "a killed backup wrote a snapshot"
    );
    let r = repo.run(&["check"]).ok();
    // Packs not yet named by an index are expected, and only warned about.
    assert!(!r.stderr.contains("error:"), "{}", r.stderr);
    resume(&repo, &src, total);
}

#[test]
fn sigint_stops_the_backup_with_exit_130() {
    let total = 24 * MIB;
    let (repo, src) = big_repo(total);
    let mut child = spawn_backup(&repo, &src);
    wait_for_packs(&repo, &mut child, 1);
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "could not send SIGINT");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        repo.snapshots(&[]).is_empty(),
        "an interrupted backup wrote a snapshot"
    );
    assert!(
        repo.files_in("locks").is_empty(),
        "lock left after a clean stop"
    );
    // A clean stop indexes what it uploaded: nothing is left for the next run to adopt.
    let r = repo.run(&["check"]).ok();
    assert!(!r.stderr.contains("not indexed"), "{}", r.stderr);
    resume(&repo, &src, total);
}
