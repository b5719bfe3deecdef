//! The `qemu` driver: one `qemu-system-x86_64` process per instance,
//! daemonized, with a pidfile and a QMP socket in the driver's state
//! directory (`<state>/<name>.{pid,qmp}`), and the instance's spec in
//! `<name>.json` for as long as it exists (QEMU removes its pidfile when it
//! exits). State comes from the process and `query-status`; stop is QMP
//! `quit`.

use super::{Driver, DriverError, InstanceSpec, InstanceStats, PowerState};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct QemuDriver {
    state_dir: PathBuf,
    /// The emulator to run.
    binary: String,
    /// `kvm` where /dev/kvm is usable, else `tcg` (software emulation).
    accel: &'static str,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl QemuDriver {
    pub fn new(state_dir: &Path, kvm: bool) -> std::io::Result<QemuDriver> {
        QemuDriver::with_binary(state_dir, kvm, "qemu-system-x86_64")
    }

    /// A driver running `binary` as the emulator.
    pub fn with_binary(state_dir: &Path, kvm: bool, binary: &str) -> std::io::Result<QemuDriver> {
        std::fs::create_dir_all(state_dir)?;
        Ok(QemuDriver {
            state_dir: state_dir.to_path_buf(),
            binary: binary.to_string(),
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

/// A path as a value in QEMU's `key=value,...` options (commas doubled).
fn qemu_opt(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// CPU time (ns) and resident memory (KiB) of a process, from /proc.
fn process_usage(pid: i32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: utime and
    // stime are the 12th and 13th of them, in clock ticks.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Some((ticks * 1_000_000_000 / hz, rss_kib))
}

impl QemuDriver {
    fn spec(&self, name: &str) -> Result<InstanceSpec, DriverError> {
        let bytes = std::fs::read(self.path(name, "json")).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DriverError::NotFound(name.into()),
            _ => DriverError::Io(e),
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| DriverError::Hypervisor(format!("the spec of {name}: {e}")))
    }
}

impl Driver for QemuDriver {
    fn name(&self) -> &'static str {
        "qemu"
    }

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
        let mut cmd = Command::new(&self.binary);
        cmd.args([
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
            qemu_opt(&spec.disk)
        ));
        // The second virtio disk (vdb), after the root disk (vda).
        if let Some(drive) = &spec.config_drive {
            cmd.arg("-drive").arg(format!(
                "file={},format=raw,if=virtio,readonly=on",
                qemu_opt(drive)
            ));
        }
        // Interfaces on the agent's taps (names and MACs of hex digits,
        // made by the agent); QEMU runs no script of its own.
        for (i, nic) in spec.nics.iter().enumerate() {
            cmd.arg("-netdev")
                .arg(format!(
                    "tap,id=net{i},ifname={},script=no,downscript=no",
                    nic.tap
                ))
                .arg("-device")
                .arg(format!("virtio-net-pci,netdev=net{i},mac={}", nic.mac));
        }
        let out = cmd
            // Appended, so the console survives a stop and start as
            // libvirt's does.
            .arg("-chardev")
            .arg(match &spec.console_socket {
                // A listening socket for the interactive console, not
                // waiting for a client; everything logged all the same.
                Some(socket) => format!(
                    "socket,id=console,path={},server=on,wait=off,logfile={},logappend=on",
                    qemu_opt(socket),
                    qemu_opt(&spec.console_log)
                ),
                None => format!(
                    "file,id=console,append=on,path={}",
                    qemu_opt(&spec.console_log)
                ),
            })
            .args(["-serial", "chardev:console"])
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
        // A guest powering itself off: its QMP goes before its process,
        // which then ends within moments. (Bounded short: heartbeats ask
        // every instance's state.)
        let status = match self.qmp(name, "query-status") {
            Ok(s) => s,
            Err(e) => {
                for _ in 0..25 {
                    if self.pid(name).is_none() {
                        return Ok(PowerState::Shutoff);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                return Err(e);
            }
        };
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
            // The guest may have powered itself off in the meantime.
            if let Err(e) = self.qmp(name, "quit") {
                if self.pid(name).is_some() {
                    return Err(e);
                }
            }
            self.wait_gone(pid);
        }
        Ok(())
    }

    fn request_shutdown(&self, name: &str) -> Result<(), DriverError> {
        self.spec(name)?;
        if self.pid(name).is_some() {
            if let Err(e) = self.qmp(name, "system_powerdown") {
                if self.pid(name).is_some() {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn start(&self, name: &str) -> Result<(), DriverError> {
        let spec = self.spec(name)?;
        if self.pid(name).is_some() {
            return Ok(());
        }
        self.launch(&spec)
    }

    fn stats(&self, name: &str) -> Result<InstanceStats, DriverError> {
        let spec = self.spec(name)?;
        let mut stats = InstanceStats {
            memory_max_kib: spec.ram_mb * 1024,
            ..Default::default()
        };
        let Some(pid) = self.pid(name) else {
            return Ok(stats);
        };
        if let Some((cpu_ns, rss_kib)) = process_usage(pid) {
            stats.cpu_time_ns = cpu_ns;
            stats.memory_used_kib = rss_kib.min(stats.memory_max_kib);
        }
        let blocks = self.qmp(name, "query-blockstats")?;
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        for dev in blocks.as_array().into_iter().flatten() {
            let s = &dev["stats"];
            stats.disk_read_bytes += n(&s["rd_bytes"]);
            stats.disk_write_bytes += n(&s["wr_bytes"]);
            stats.disk_read_requests += n(&s["rd_operations"]);
            stats.disk_write_requests += n(&s["wr_operations"]);
        }
        Ok(stats)
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
                    .strip_suffix(".json")
                    .map(str::to_string)
            })
            .collect();
        out.sort();
        Ok(out)
    }
}
