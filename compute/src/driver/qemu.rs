//! The `qemu` driver: one `qemu-system-x86_64` process per instance,
//! daemonized, with a pidfile and a QMP socket in the driver's state
//! directory (`<state>/<name>.{pid,qmp}`), and the instance's spec in
//! `<name>.json` for as long as it exists (QEMU removes its pidfile when it
//! exits). State comes from the process and `query-status`; stop is QMP
//! `quit`.

use super::{Driver, DriverError, InstanceSpec, PowerState};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct QemuDriver {
    state_dir: PathBuf,
    /// `kvm` where /dev/kvm is usable, else `tcg` (software emulation).
    accel: &'static str,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl QemuDriver {
    pub fn new(state_dir: &Path, kvm: bool) -> std::io::Result<QemuDriver> {
        std::fs::create_dir_all(state_dir)?;
        Ok(QemuDriver {
            state_dir: state_dir.to_path_buf(),
            accel: if kvm { "kvm" } else { "tcg" },
        })
    }

    fn path(&self, name: &str, ext: &str) -> PathBuf {
        self.state_dir.join(format!("{name}.{ext}"))
    }

    fn pid(&self, name: &str) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.path(name, "pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // Alive, and still a QEMU (pids are reused).
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        cmdline
            .windows(b"qemu-system".len())
            .any(|w| w == b"qemu-system")
            .then_some(pid)
    }

    /// Sends one QMP command; its `return` value.
    fn qmp(&self, name: &str, command: &str) -> Result<serde_json::Value, DriverError> {
        let hv = |e: std::io::Error| DriverError::Hypervisor(format!("QMP of {name}: {e}"));
        let stream = UnixStream::connect(self.path(name, "qmp")).map_err(hv)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(hv)?;
        let mut writer = stream.try_clone().map_err(hv)?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).map_err(hv)?; // the greeting
        for cmd in ["qmp_capabilities", command] {
            writeln!(writer, "{{\"execute\": \"{cmd}\"}}").map_err(hv)?;
            loop {
                line.clear();
                if reader.read_line(&mut line).map_err(hv)? == 0 {
                    // `quit` closes the socket instead of answering, sometimes.
                    return Ok(serde_json::Value::Null);
                }
                let v: serde_json::Value = serde_json::from_str(&line)
                    .map_err(|e| DriverError::Hypervisor(format!("QMP of {name}: {e}")))?;
                if v.get("event").is_some() {
                    continue;
                }
                if let Some(err) = v.get("error") {
                    return Err(DriverError::Hypervisor(format!(
                        "QMP {cmd} on {name}: {err}"
                    )));
                }
                if cmd == command {
                    return Ok(v["return"].clone());
                }
                break;
            }
        }
        Ok(serde_json::Value::Null)
    }

    fn wait_gone(&self, pid: i32) {
        for _ in 0..200 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Driver for QemuDriver {
    fn launch(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        if !valid_name(&spec.name) {
            return Err(DriverError::Launch(
                spec.name.clone(),
                "invalid instance name".into(),
            ));
        }
        if self.pid(&spec.name).is_some() {
            return Err(DriverError::Exists(spec.name.clone()));
        }
        let (pid, qmp) = (self.path(&spec.name, "pid"), self.path(&spec.name, "qmp"));
        let _ = std::fs::remove_file(&qmp);
        std::fs::write(
            self.path(&spec.name, "json"),
            serde_json::to_vec(spec).expect("specs serialize"),
        )?;
        let out = Command::new("qemu-system-x86_64")
            .args([
                "-name",
                &spec.name,
                "-machine",
                &format!("pc,accel={}", self.accel),
            ])
            .args([
                "-m",
                &spec.ram_mb.to_string(),
                "-smp",
                &spec.vcpus.to_string(),
            ])
            .arg("-drive")
            .arg(format!(
                "file={},format=qcow2,if=virtio",
                spec.disk.display()
            ))
            .arg("-serial")
            .arg(format!("file:{}", spec.console_log.display()))
            .args([
                "-display",
                "none",
                "-monitor",
                "none",
                "-nodefaults",
                "-daemonize",
            ])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .arg("-pidfile")
            .arg(&pid)
            .output()?;
        if !out.status.success() {
            return Err(DriverError::Launch(
                spec.name.clone(),
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        Ok(())
    }

    fn state(&self, name: &str) -> Result<PowerState, DriverError> {
        if !self.path(name, "json").exists() {
            return Err(DriverError::NotFound(name.into()));
        }
        if self.pid(name).is_none() {
            return Ok(PowerState::Shutoff);
        }
        let status = self.qmp(name, "query-status")?;
        Ok(match status["status"].as_str() {
            Some("running") => PowerState::Running,
            Some("paused") | Some("suspended") => PowerState::Paused,
            _ => PowerState::Shutoff,
        })
    }

    fn stop(&self, name: &str) -> Result<(), DriverError> {
        if !self.path(name, "json").exists() {
            return Err(DriverError::NotFound(name.into()));
        }
        if let Some(pid) = self.pid(name) {
            self.qmp(name, "quit")?;
            self.wait_gone(pid);
        }
        Ok(())
    }

    fn destroy(&self, name: &str) -> Result<(), DriverError> {
        if let Some(pid) = self.pid(name) {
            let _ = self.qmp(name, "quit");
            self.wait_gone(pid);
            if self.pid(name).is_some() {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                self.wait_gone(pid);
            }
        } else if !self.path(name, "json").exists() {
            return Err(DriverError::NotFound(name.into()));
        }
        for ext in ["pid", "qmp", "json"] {
            let _ = std::fs::remove_file(self.path(name, ext));
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<String>, DriverError> {
        let mut out: Vec<String> = std::fs::read_dir(&self.state_dir)?
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_suffix(".pid")
                    .map(str::to_string)
            })
            .collect();
        out.sort();
        Ok(out)
    }
}
