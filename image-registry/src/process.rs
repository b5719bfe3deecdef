//! Running qemu-img and friends with a wall-clock bound (shared by the
//! registry's conversion and compute's overlays).

use std::process::{Command, Stdio};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("qemu-img {0} failed: {1}")]
    Failed(&'static str, String),
    #[error("qemu-img {0} took longer than {1:?}")]
    Timeout(&'static str, Duration),
    #[error("qemu-img {0} wrote more than {1} bytes: rejected")]
    Capped(&'static str, u64),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs a command, killing it after `limit`; its stdout. A helper thread
/// waits for it, so the result comes the moment it exits. `what` names the
/// step in errors (`info`, `convert`, `create`).
pub fn run_bounded(
    what: &'static str,
    mut cmd: Command,
    limit: Duration,
) -> Result<Vec<u8>, RunError> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RunError::Failed(what, e.to_string()))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out?,
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            return Err(RunError::Timeout(what, limit));
        }
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(RunError::Failed(
            what,
            if err.is_empty() {
                out.status.to_string()
            } else {
                err
            },
        ));
    }
    Ok(out.stdout)
}

/// Runs a command that writes `output`, killing it after `limit` or as
/// soon as `output` takes more than `cap` bytes on disk (checked every
/// 50 ms): a conversion that would expand without bound is stopped, not
/// left to fill the disk.
pub fn run_capped(
    what: &'static str,
    mut cmd: Command,
    output: &std::path::Path,
    cap: u64,
    limit: Duration,
) -> Result<(), RunError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RunError::Failed(what, e.to_string()))?;
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let err = err.trim();
            return Err(RunError::Failed(
                what,
                if err.is_empty() {
                    status.to_string()
                } else {
                    err.to_string()
                },
            ));
        }
        let taken = std::fs::metadata(output).map_or(0, |m| m.blocks() * 512);
        if taken > cap {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RunError::Capped(what, cap));
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RunError::Timeout(what, limit));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_past_its_limit_is_killed() {
        let started = std::time::Instant::now();
        let mut cmd = Command::new("sleep");
        cmd.arg("5");
        let e = run_bounded("info", cmd, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, RunError::Timeout(..)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo bad >&2; exit 3"]);
        let e = run_bounded("convert", cmd, Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.to_string(), "qemu-img convert failed: bad");
    }

    #[test]
    fn a_command_writing_past_its_cap_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!(
            "while true; do head -c 1048576 /dev/urandom >> {}; done",
            out.display()
        ));
        let e = run_capped("convert", cmd, &out, 4 << 20, Duration::from_secs(20)).unwrap_err();
        assert!(matches!(e, RunError::Capped("convert", _)), "{e}");
        let small = dir.path().join("small");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("head -c 4096 /dev/urandom > {}", small.display()));
        run_capped("convert", cmd, &small, 4 << 20, Duration::from_secs(20)).unwrap();
    }
}
