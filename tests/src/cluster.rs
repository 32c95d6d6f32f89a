//! A Redis Cluster a test starts for itself (3 masters + 3 replicas from the installed
//! `redis-server`, through `deploy/local/redis-cluster.sh`), for tests that harm it: they
//! kill its processes, which must never be the shared cluster of the test command.

use std::path::PathBuf;
use std::process::Command;

use pipeline_redis::RedisTarget;

/// A running cluster on six loopback ports from `base_port`; stopped when dropped (only
/// its own servers, by the pids in its pid files).
pub struct OwnCluster {
    base_port: u16,
    dir: PathBuf,
    /// The node URLs.
    pub nodes: Vec<String>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/redis-cluster.sh")
}

impl OwnCluster {
    /// Starts the cluster (its files under `.local/redis-cluster-<base_port>/` in the
    /// checkout) and waits until every node reports `cluster_state:ok`.
    ///
    /// # Errors
    /// The script failed (no `redis-server`, a port in use, ...).
    pub fn start(base_port: u16) -> anyhow::Result<Self> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../.local/redis-cluster-{base_port}"));
        let out = Command::new(script())
            .arg("start")
            .env("REDIS_CLUSTER_BASE_PORT", base_port.to_string())
            .env("REDIS_CLUSTER_DIR", &dir)
            .output()?;
        // Stops whatever the script started, even when it failed half-way.
        let mut cluster = Self {
            base_port,
            dir,
            nodes: Vec::new(),
        };
        anyhow::ensure!(
            out.status.success(),
            "redis-cluster.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.nodes = String::from_utf8(out.stdout)?
            .trim()
            .split(',')
            .map(str::to_owned)
            .collect();
        Ok(cluster)
    }

    /// The cluster as a target for pools and settings.
    pub fn target(&self) -> RedisTarget {
        RedisTarget::Cluster(self.nodes.clone())
    }

    /// The pid of the server on `port` (one this cluster started).
    ///
    /// # Errors
    /// No pid file for that port.
    pub fn pid(&self, port: u16) -> anyhow::Result<u32> {
        let path = self.dir.join(port.to_string()).join("redis.pid");
        Ok(std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            .trim()
            .parse()?)
    }

    /// Sends SIGKILL to the server on `port`: no shutdown, no last write, as a crash.
    ///
    /// # Errors
    /// `kill` failed.
    pub fn kill(&self, port: u16) -> anyhow::Result<()> {
        let pid = self.pid(port)?;
        let status = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -KILL {pid} failed");
        Ok(())
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        // A failure leaves servers behind, which the next `start` on these ports stops.
        let _ = Command::new(script())
            .arg("stop")
            .env("REDIS_CLUSTER_BASE_PORT", self.base_port.to_string())
            .env("REDIS_CLUSTER_DIR", &self.dir)
            .status();
    }
}
