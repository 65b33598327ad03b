//! Small helpers the integration tests and harnesses share: loopback ports, scratch directories
//! and child processes that cannot outlive their test.
#![allow(clippy::expect_used)] // test support: failing loudly is right

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A loopback address with a port that was free a moment ago (the OS picked it).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
}

pub fn free_port() -> u16 {
    free_addr().port()
}

/// A fresh directory under the system temp dir, unique per process and call.
pub fn temp_dir(prefix: &str, name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "realload-{prefix}-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// A child process that is killed and reaped when dropped, also when a test panics.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dirs_are_distinct_and_children_are_reaped() {
        assert_ne!(temp_dir("t", "x"), temp_dir("t", "x"));
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        drop(KillOnDrop(child));
        // reaped: no /proc entry left (a zombie would still have one)
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
