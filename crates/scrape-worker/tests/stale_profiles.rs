//! Browser profiles a killed worker left behind are deleted by the next pool's start, and
//! nothing a live process still uses is touched. Real directories in a temporary directory
//! of the test's own, real processes for "alive" and "gone".

use std::path::{Path, PathBuf};
use std::process::Command;

use scrape_worker::render::process::{profile_root_name, remove_stale_profiles};

/// A directory of the test's own, deleted when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "stale-profiles-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn make_root(temp: &Path, name: &str) -> PathBuf {
    let root = temp.join(name);
    // A profile as a browser leaves it: nested directories and files.
    std::fs::create_dir_all(root.join("b0-0/Default/Cache")).unwrap();
    std::fs::write(root.join("b0-0/Default/Preferences"), b"{}").unwrap();
    root
}

#[test]
fn stale_profile_roots_go_and_live_ones_stay() {
    let temp = TempDir::new("live");
    let own = std::process::id();
    // A process that has exited (reaped): its pid names no running process.
    let gone = {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    // A process that runs for the whole test.
    let mut alive = Command::new("sleep").arg("30").spawn().unwrap();

    let dead_root = make_root(temp.path(), &profile_root_name(gone, "aaaa"));
    let alive_root = make_root(temp.path(), &profile_root_name(alive.id(), "bbbb"));
    let own_kept = make_root(temp.path(), &profile_root_name(own, "cccc"));
    // Same pid as this process (a restarted container's worker), not one of its pools.
    let own_stale = make_root(temp.path(), &profile_root_name(own, "dddd"));
    // Not a profile root: other names and files are never touched.
    let other_dir = make_root(temp.path(), "pipeline-renderer-notes");
    let file = temp.path().join(profile_root_name(gone, "file"));
    std::fs::write(&file, b"not a directory").unwrap();

    let removed = remove_stale_profiles(temp.path(), own, std::slice::from_ref(&own_kept));

    let pid_gone = !Path::new(&format!("/proc/{gone}")).exists();
    alive.kill().unwrap();
    alive.wait().unwrap();
    assert_eq!(removed, if pid_gone { 2 } else { 1 });
    assert_eq!(
        dead_root.exists(),
        !pid_gone,
        "the root of an exited process"
    );
    assert!(
        !own_stale.exists(),
        "a root of this pid that no pool of it uses"
    );
    assert!(alive_root.exists(), "a live process's root is left alone");
    assert!(own_kept.exists(), "this process's pool's own root is kept");
    assert!(other_dir.exists());
    assert!(file.exists());
}

#[test]
fn a_missing_temporary_directory_removes_nothing() {
    let temp = TempDir::new("missing");
    let missing = temp.path().join("absent");
    assert_eq!(remove_stale_profiles(&missing, std::process::id(), &[]), 0);
}
