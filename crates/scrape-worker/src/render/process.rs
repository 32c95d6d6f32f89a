//! One Chromium process: launched so that it cannot outlive the worker, and stopped with
//! every process it started.
//!
//! - **No orphans after `kill -9`.** The browser is started through util-linux's `setpriv
//!   --pdeathsig KILL`, so the kernel kills it when the thread that started it dies, and the
//!   browser's own children (zygote, renderers, utility processes) exit when their parent's
//!   IPC channel closes. The death signal belongs to the starting *thread*, not the process:
//!   browsers are therefore started from one thread of our own that lives as long as the
//!   process ([`Launcher`]), never from a runtime's blocking pool, whose idle threads exit
//!   (and would take their browsers with them).
//! - **Stopped as a group.** The browser leads a process group of its own; stopping it
//!   sends `SIGKILL` to the whole group, so a renderer stuck in a loop goes too.
//! - **Profile per process.** Each browser gets an empty profile directory, deleted when it
//!   stops: nothing a page stored survives the browser.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::sync::oneshot;

/// Why a browser could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The binary is not there or cannot run.
    #[error("cannot start the browser {browser:?}: {source}")]
    Spawn {
        /// The binary named in `render.browser`.
        browser: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// It started but never said where its DevTools endpoint listens.
    #[error("the browser did not open its DevTools endpoint within {0:?}; its last words: {1}")]
    NoEndpoint(Duration, String),
}

/// Finds `browser` (a path, or a name on `PATH`) and checks that it runs, for the worker's
/// start-up check. Returns the resolved path and the version line it printed.
///
/// # Errors
/// A message naming the binary and what to do.
pub fn check_browser(browser: &str) -> Result<(PathBuf, String), String> {
    let path = which(browser).ok_or_else(|| {
        format!(
            "render.enabled is true but the browser {browser:?} was not found: install it \
             (Debian/Ubuntu: `apt-get install chromium`), point render.browser at it, or set \
             render.enabled = false (PIPELINE__RENDER__ENABLED=false)"
        )
    })?;
    let out = Command::new(&path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("the browser {} does not run: {e}", path.display()))?;
    if !out.status.success() {
        return Err(format!(
            "the browser {} failed `--version` ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok((path, version))
}

/// `name` if it is a path to a file, else the first match on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    let direct = Path::new(name);
    if name.contains('/') {
        return direct.is_file().then(|| direct.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Whether this process runs as root (Chromium's sandbox refuses root; then it runs with
/// `--no-sandbox`, and the docs say to run the worker as another user).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// What to start: the binary, its arguments, and the profile directory.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The browser binary.
    pub browser: PathBuf,
    /// Arguments before the profile directory and the DevTools port.
    pub args: Vec<String>,
    /// The profile directory to create (and delete when the browser stops).
    pub profile: PathBuf,
    /// The browser's `TMPDIR`, created and deleted like the profile: a browser stopped with
    /// SIGKILL cannot remove its temporary files (its singleton socket directory), so they
    /// must be where the stop deletes. Keep it short: the socket's whole path must fit the
    /// 107 bytes of a Unix socket path.
    pub temp: PathBuf,
    /// How long to wait for the DevTools endpoint.
    pub timeout: Duration,
}

/// A started browser.
pub struct BrowserProcess {
    child: Arc<Mutex<Child>>,
    pid: u32,
    /// The DevTools WebSocket URL it printed.
    pub ws_url: String,
    profile: PathBuf,
    temp: PathBuf,
}

impl std::fmt::Debug for BrowserProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserProcess")
            .field("pid", &self.pid)
            .field("ws_url", &self.ws_url)
            .finish_non_exhaustive()
    }
}

impl BrowserProcess {
    /// The browser's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the browser's main process has exited.
    pub fn exited(&self) -> bool {
        self.child
            .lock()
            .map(|mut c| !matches!(c.try_wait(), Ok(None)))
            .unwrap_or(true)
    }

    /// Kills the browser's whole process group, reaps the main process and deletes the
    /// profile. Safe to call twice.
    pub async fn stop(&self) {
        let pgid = Pid::from_raw(self.pid as i32);
        // ESRCH (already gone) is the expected answer after a crash: ignored on purpose.
        let _ = killpg(pgid, Signal::SIGKILL);
        let child = self.child.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(mut c) = child.lock() {
                // Reaps the main process; its children were killed with the group.
                let _ = c.wait();
            }
        })
        .await;
        let profile = self.profile.clone();
        let temp = self.temp.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_dir_all(temp);
            std::fs::remove_dir_all(profile)
        })
        .await;
    }

    /// A handle that kills this browser's process group without owning the browser: the
    /// pool's shutdown uses it while a render still holds the browser.
    pub fn killer(&self) -> GroupKiller {
        GroupKiller {
            child: self.child.clone(),
            pid: self.pid,
        }
    }

    /// Kills one process of the browser's group (a renderer over its memory budget).
    pub fn kill_member(pid: u32) {
        // The renderer may have exited since it was measured: ignored on purpose.
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// Kills a browser's process group (see [`BrowserProcess::killer`]). Reaping and the
/// profile stay with [`BrowserProcess::stop`].
#[derive(Debug, Clone)]
pub struct GroupKiller {
    child: Arc<Mutex<Child>>,
    pid: u32,
}

impl GroupKiller {
    /// Sends `SIGKILL` to the group while its leader (the main process) is alive and
    /// unreaped, so its pid, which is the group's id, cannot have been reused. After the
    /// leader has exited it sends nothing; [`BrowserProcess::stop`] kills what is left.
    pub fn kill(&self) {
        let Ok(mut child) = self.child.lock() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            // ESRCH cannot happen while the leader lives; any other error changes nothing.
            let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        }
    }
}

type Reply = oneshot::Sender<Result<(Child, mpsc::Receiver<String>), LaunchError>>;

/// The thread browsers are started from (see the module docs: the death signal follows
/// the starting thread, so this one lives as long as the process).
#[derive(Debug, Clone)]
pub struct Launcher {
    tx: mpsc::Sender<(LaunchSpec, Reply)>,
}

impl Launcher {
    /// Starts the launcher thread.
    ///
    /// # Panics
    /// When the OS cannot start a thread.
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel::<(LaunchSpec, Reply)>();
        std::thread::Builder::new()
            .name("browser-launcher".into())
            .spawn(move || {
                for (spec, reply) in rx {
                    let _ = reply.send(spawn(&spec));
                }
            })
            .expect("starting the browser launcher thread");
        Self { tx }
    }

    /// Starts a browser and waits for its DevTools endpoint.
    ///
    /// # Errors
    /// When it cannot be started or never opens its endpoint.
    pub async fn launch(&self, spec: LaunchSpec) -> Result<BrowserProcess, LaunchError> {
        let (reply, rx) = oneshot::channel();
        let timeout = spec.timeout;
        let profile = spec.profile.clone();
        let temp = spec.temp.clone();
        let browser = spec.browser.display().to_string();
        let gone = || LaunchError::Spawn {
            browser: browser.clone(),
            source: std::io::Error::other("the launcher thread is gone"),
        };
        self.tx.send((spec, reply)).map_err(|_| gone())?;
        let (child, lines) = rx.await.map_err(|_| gone())??;
        let pid = child.id();
        let child = Arc::new(Mutex::new(child));
        let found = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + timeout;
            let mut last = String::new();
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match lines.recv_timeout(left) {
                    Ok(line) => {
                        if let Some(url) = line.strip_prefix("DevTools listening on ") {
                            return Ok(url.trim().to_owned());
                        }
                        last = line;
                    }
                    Err(_) => return Err(last),
                }
            }
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let process = BrowserProcess {
            child,
            pid,
            ws_url: String::new(),
            profile,
            temp,
        };
        match found {
            Ok(ws_url) => Ok(BrowserProcess { ws_url, ..process }),
            Err(last) => {
                process.stop().await;
                Err(LaunchError::NoEndpoint(timeout, last))
            }
        }
    }
}

impl Default for Launcher {
    fn default() -> Self {
        Self::new()
    }
}

/// Spawns the browser (on the launcher thread) and a thread that reads its stderr: lines
/// go to `tracing` at debug level, and to the returned channel until the endpoint is found.
fn spawn(spec: &LaunchSpec) -> Result<(Child, mpsc::Receiver<String>), LaunchError> {
    let spawn_err = |source| LaunchError::Spawn {
        browser: spec.browser.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&spec.profile).map_err(spawn_err)?;
    std::fs::create_dir_all(&spec.temp).map_err(spawn_err)?;
    let setpriv = which("setpriv");
    let mut cmd = match &setpriv {
        Some(setpriv) => {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--"]).arg(&spec.browser);
            c
        }
        None => Command::new(&spec.browser),
    };
    cmd.args(&spec.args)
        .arg(format!("--user-data-dir={}", spec.profile.display()))
        .arg("--remote-debugging-port=0")
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("TMPDIR", &spec.temp)
        .process_group(0);
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if setpriv.is_none() {
        tracing::warn!(
            "setpriv (util-linux) not found: a browser may outlive a worker killed with SIGKILL"
        );
    }
    let stderr = child.stderr.take();
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    std::thread::Builder::new()
        .name("browser-stderr".into())
        .spawn(move || {
            let Some(stderr) = stderr else { return };
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                tracing::debug!(browser_pid = pid, "{line}");
                if let Some(t) = &tx
                    && t.send(line).is_err()
                {
                    tx = None;
                }
            }
        })
        .map_err(spawn_err)?;
    Ok((child, rx))
}

/// The name of the directory a pool keeps its browsers' profiles in, under the temporary
/// directory: `pipeline-render-<pid>-<unique>`.
pub fn profile_root_name(pid: u32, unique: &str) -> String {
    format!("{PROFILE_ROOT_PREFIX}{pid}-{unique}")
}

const PROFILE_ROOT_PREFIX: &str = "pipeline-render-";

/// The profile roots this process's pools use now (see [`remove_stale_profiles`]).
static LIVE_ROOTS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Records that a pool of this process uses `root` (until [`release_profile_root`]).
pub fn claim_profile_root(root: &Path) {
    if let Ok(mut roots) = LIVE_ROOTS.lock() {
        roots.push(root.to_path_buf());
    }
}

/// Records that `root` is no longer used (its pool shut down).
pub fn release_profile_root(root: &Path) {
    if let Ok(mut roots) = LIVE_ROOTS.lock() {
        roots.retain(|r| r != root);
    }
}

/// The roots claimed by this process's pools.
pub fn claimed_profile_roots() -> Vec<PathBuf> {
    LIVE_ROOTS.lock().map(|r| r.clone()).unwrap_or_default()
}

/// Deletes the profile roots under `temp` that a worker killed without its shutdown (kill
/// -9, the OOM killer) left behind: those of a process that no longer runs, and those
/// named with this process's pid (`own_pid`) but not in `keep` (a container restarted
/// under an init often gets the pid its predecessor had; `keep` holds the roots this
/// process's pools use). A root of another live process is left alone. Returns how many
/// were deleted; a directory that cannot be deleted (gone meanwhile) is skipped.
pub fn remove_stale_profiles(temp: &Path, own_pid: u32, keep: &[PathBuf]) -> usize {
    let Ok(dir) = std::fs::read_dir(temp) else {
        return 0;
    };
    let mut removed = 0;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PROFILE_ROOT_PREFIX))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let path = entry.path();
        let stale = if pid == own_pid {
            !keep.contains(&path)
        } else {
            !Path::new(&format!("/proc/{pid}")).exists()
        };
        if stale
            && entry.file_type().is_ok_and(|t| t.is_dir())
            && std::fs::remove_dir_all(&path).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// The members of a browser's process group: (pid, resident bytes, whether a renderer).
pub fn group_members(pgid: u32) -> Vec<(u32, u64, bool)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let page = 4096u64;
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name may hold spaces and parentheses: fields start after the last ')'.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // rest[0] is state (field 3); pgrp is field 5, rss (pages) field 24.
            let pgrp: u32 = fields.get(2)?.parse().ok()?;
            if pgrp != pgid {
                return None;
            }
            let rss: u64 = fields.get(21)?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let renderer = String::from_utf8_lossy(&cmdline).contains("--type=renderer");
            Some((pid, rss * page, renderer))
        })
        .collect()
}
