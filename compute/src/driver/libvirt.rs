//! The `libvirt` driver, through the `virt` crate: each instance is a
//! persistent domain (so a guest that powers off stays known, `Shutoff`),
//! of type `qemu` (software emulation) or `kvm` as configured, with a
//! virtio disk and its serial console logged to a file. Only domains whose
//! names start with the driver's prefix are its own.

use super::{Driver, DriverError, InstanceSpec, InstanceStats, PowerState};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;

pub struct LibvirtDriver {
    uri: String,
    /// `qemu` or `kvm`.
    domain_type: &'static str,
    prefix: String,
}

fn hv(e: virt::error::Error) -> DriverError {
    DriverError::Hypervisor(e.to_string())
}

/// Text safe inside an XML attribute or element.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The domain XML of an instance.
pub fn domain_xml(spec: &InstanceSpec, domain_type: &str) -> String {
    format!(
        r#"<domain type='{domain_type}'>
  <name>{name}</name>
  <memory unit='MiB'>{ram}</memory>
  <vcpu>{vcpus}</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>{config_drive}{nics}
    {serial}
  </devices>
</domain>"#,
        name = xml_escape(&spec.name),
        ram = spec.ram_mb,
        vcpus = spec.vcpus,
        disk = xml_escape(&spec.disk.to_string_lossy()),
        serial = serial_xml(spec),
        config_drive = spec
            .config_drive
            .as_ref()
            .map(|d| format!(
                "\n    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      <source file='{}'/>\n      <target dev='vdb' bus='virtio'/>\n      <readonly/>\n    </disk>",
                xml_escape(&d.to_string_lossy())
            ))
            .unwrap_or_default(),
        // An existing tap (`managed='no'`): libvirt neither makes nor
        // removes it, the agent does ([`crate::host_network`]).
        nics = spec
            .nics
            .iter()
            .map(|n| format!(
                "\n    <interface type='ethernet'>\n      <mac address='{}'/>\n      <target dev='{}' managed='no'/>\n      <model type='virtio'/>\n    </interface>",
                xml_escape(&n.mac),
                xml_escape(&n.tap)
            ))
            .collect::<String>(),
    )
}

/// The serial port: a Unix socket libvirt's QEMU listens on, logged to
/// the console log (`<log>`), or only the log.
fn serial_xml(spec: &InstanceSpec) -> String {
    let log = xml_escape(&spec.console_log.to_string_lossy());
    match &spec.console_socket {
        Some(socket) => format!(
            "<serial type='unix'><source mode='bind' path='{}'/><log file='{log}' append='on'/><target port='0'/></serial>",
            xml_escape(&socket.to_string_lossy())
        ),
        None => format!(
            "<serial type='file'><source path='{log}' append='on'/><target port='0'/></serial>"
        ),
    }
}

/// Powers a domain off if it runs. A guest may power itself off between
/// the check and the call: "not running" then is success.
fn power_off(d: &Domain) -> Result<(), DriverError> {
    if d.is_active().map_err(hv)? {
        if let Err(e) = d.destroy() {
            if e.code() != ErrorNumber::OperationInvalid || d.is_active().map_err(hv)? {
                return Err(hv(e));
            }
        }
    }
    Ok(())
}

impl LibvirtDriver {
    /// `uri` such as `qemu:///system`; `kvm` picks the domain type.
    pub fn new(uri: &str, kvm: bool, prefix: &str) -> Result<LibvirtDriver, DriverError> {
        // libvirt prints every error to stderr by default, including the
        // "no such domain" of a lookup that is expected to fail; errors
        // reach us as values anyway.
        virt::error::clear_error_callback();
        // Fails early when no daemon answers, so callers can fall back.
        Connect::open(Some(uri)).map_err(hv)?;
        Ok(LibvirtDriver {
            uri: uri.to_string(),
            domain_type: if kvm { "kvm" } else { "qemu" },
            prefix: prefix.to_string(),
        })
    }

    fn conn(&self) -> Result<Connect, DriverError> {
        Connect::open(Some(&self.uri)).map_err(hv)
    }

    fn domain(&self, conn: &Connect, name: &str) -> Result<Domain, DriverError> {
        if !name.starts_with(&self.prefix) {
            return Err(DriverError::NotFound(name.into()));
        }
        Domain::lookup_by_name(conn, name).map_err(|e| match e.code() {
            ErrorNumber::NoDomain => DriverError::NotFound(name.into()),
            _ => hv(e),
        })
    }
}

impl Driver for LibvirtDriver {
    fn name(&self) -> &'static str {
        "libvirt"
    }

    fn launch(&self, spec: &InstanceSpec) -> Result<(), DriverError> {
        if !spec.name.starts_with(&self.prefix) {
            return Err(DriverError::Launch(
                spec.name.clone(),
                format!("names must start with {}", self.prefix),
            ));
        }
        let mut conn = self.conn()?;
        if self.domain(&conn, &spec.name).is_ok() {
            return Err(DriverError::Exists(spec.name.clone()));
        }
        let result = Domain::define_xml(&conn, &domain_xml(spec, self.domain_type))
            .and_then(|d| d.create().map(|_| d))
            .map_err(|e| DriverError::Launch(spec.name.clone(), e.to_string()));
        if result.is_err() {
            if let Ok(d) = Domain::lookup_by_name(&conn, &spec.name) {
                let _ = d.undefine();
            }
        }
        let _ = conn.close();
        result.map(|_| ())
    }

    fn state(&self, name: &str) -> Result<PowerState, DriverError> {
        let mut conn = self.conn()?;
        let d = self.domain(&conn, name)?;
        let (state, _) = d.get_state().map_err(hv)?;
        let _ = conn.close();
        Ok(match state {
            virt::sys::VIR_DOMAIN_RUNNING | virt::sys::VIR_DOMAIN_BLOCKED => PowerState::Running,
            virt::sys::VIR_DOMAIN_PAUSED | virt::sys::VIR_DOMAIN_PMSUSPENDED => PowerState::Paused,
            _ => PowerState::Shutoff,
        })
    }

    fn stop(&self, name: &str) -> Result<(), DriverError> {
        let mut conn = self.conn()?;
        let d = self.domain(&conn, name)?;
        power_off(&d)?;
        let _ = conn.close();
        Ok(())
    }

    fn request_shutdown(&self, name: &str) -> Result<(), DriverError> {
        let mut conn = self.conn()?;
        let d = self.domain(&conn, name)?;
        if d.is_active().map_err(hv)? {
            if let Err(e) = d.shutdown() {
                if e.code() != ErrorNumber::OperationInvalid || d.is_active().map_err(hv)? {
                    return Err(hv(e));
                }
            }
        }
        let _ = conn.close();
        Ok(())
    }

    fn start(&self, name: &str) -> Result<(), DriverError> {
        let mut conn = self.conn()?;
        let d = self.domain(&conn, name)?;
        if !d.is_active().map_err(hv)? {
            d.create()
                .map_err(|e| DriverError::Launch(name.into(), e.to_string()))?;
        }
        let _ = conn.close();
        Ok(())
    }

    fn stats(&self, name: &str) -> Result<InstanceStats, DriverError> {
        let mut conn = self.conn()?;
        let d = self.domain(&conn, name)?;
        let info = d.get_info().map_err(hv)?;
        let mut stats = InstanceStats {
            memory_max_kib: info.max_mem,
            ..Default::default()
        };
        if d.is_active().map_err(hv)? {
            stats.cpu_time_ns = info.cpu_time;
            stats.memory_used_kib = info.memory;
            let b = d.get_block_stats("vda").map_err(hv)?;
            // libvirt reports -1 for a counter it does not have.
            let n = |v: i64| u64::try_from(v).unwrap_or(0);
            stats.disk_read_bytes = n(b.rd_bytes);
            stats.disk_write_bytes = n(b.wr_bytes);
            stats.disk_read_requests = n(b.rd_req);
            stats.disk_write_requests = n(b.wr_req);
        }
        let _ = conn.close();
        Ok(stats)
    }

    fn destroy(&self, name: &str) -> Result<(), DriverError> {
        let mut conn = self.conn()?;
        let d = self.domain(&conn, name)?;
        power_off(&d)?;
        d.undefine().map_err(hv)?;
        let _ = conn.close();
        Ok(())
    }

    fn list(&self) -> Result<Vec<String>, DriverError> {
        let mut conn = self.conn()?;
        let mut names: Vec<String> = conn
            .list_all_domains(0)
            .map_err(hv)?
            .iter()
            .filter_map(|d| d.get_name().ok())
            .filter(|n| n.starts_with(&self.prefix))
            .collect();
        let _ = conn.close();
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_xml_escapes_paths_and_sets_the_type() {
        let spec = InstanceSpec {
            name: "nubo-1".into(),
            vcpus: 2,
            ram_mb: 512,
            disk: "/data/a&b'.qcow2".into(),
            console_log: "/data/console.log".into(),
            console_socket: None,
            config_drive: None,
            nics: Vec::new(),
        };
        let xml = domain_xml(&spec, "qemu");
        assert!(xml.starts_with("<domain type='qemu'>"));
        assert!(xml.contains("<source file='/data/a&amp;b&apos;.qcow2'/>"));
        assert!(xml.contains("<vcpu>2</vcpu>") && xml.contains("<memory unit='MiB'>512</memory>"));
        assert!(xml.contains("<target dev='vda' bus='virtio'/>"));
        assert!(!xml.contains("vdb"));
        assert!(xml.contains("<serial type='file'><source path='/data/console.log' append='on'/>"));
        // An interactive console: a socket libvirt's QEMU binds, logged.
        let interactive = domain_xml(
            &InstanceSpec {
                console_socket: Some("/data/console.sock".into()),
                ..spec.clone()
            },
            "qemu",
        );
        assert!(interactive.contains(
            "<serial type='unix'><source mode='bind' path='/data/console.sock'/><log file='/data/console.log' append='on'/>"
        ));
        // A config drive: the second disk, raw and read-only.
        let with_drive = InstanceSpec {
            config_drive: Some("/data/disk.config".into()),
            ..spec
        };
        let xml = domain_xml(&with_drive, "qemu");
        let vda = xml.find("dev='vda'").unwrap();
        let drive = xml.find("<source file='/data/disk.config'/>").unwrap();
        assert!(vda < drive, "the root disk comes first");
        let rest = &xml[drive..];
        assert!(rest.contains("<target dev='vdb' bus='virtio'/>") && rest.contains("<readonly/>"));
        assert!(xml.contains("<driver name='qemu' type='raw'/>"));
        assert!(!xml.contains("<interface"));
        // An interface: virtio on the agent's own tap, its MAC kept.
        let with_nic = InstanceSpec {
            nics: vec![crate::driver::NicSpec {
                tap: "tap0123456789a0".into(),
                mac: "fa:16:3e:01:02:03".into(),
            }],
            ..with_drive
        };
        let xml = domain_xml(&with_nic, "qemu");
        assert!(xml.contains(
            "<interface type='ethernet'>\n      <mac address='fa:16:3e:01:02:03'/>\n      <target dev='tap0123456789a0' managed='no'/>\n      <model type='virtio'/>\n    </interface>"
        ), "{xml}");
    }
}
