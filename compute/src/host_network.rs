//! A compute host's side of guest networks (nova-network style): for each
//! network the agent's configuration gives a bridge, the Linux bridge
//! itself (made if missing, holding the network's gateway address), one
//! dnsmasq serving DHCP on it with a static entry per interface (MAC →
//! the address the API handed out, nothing from a pool), and a tap device
//! per interface on the bridge, which the drivers give the guest as
//! virtio-net. The bridge also holds the metadata service's address.
//!
//! Links are made with iproute2's `ip` (what Nova's linux_net did; a
//! netlink crate would replace a handful of commands with a protocol
//! client for no gain here) and DHCP by Debian's dnsmasq (the DHCP server
//! nova-network and Neutron run; no Rust DHCP server is as well kept),
//! its leases released by dnsmasq-utils' `dhcp_release` when a guest goes. No
//! route off the host is made; outbound NAT only where a bridge's
//! configuration asks for it ([`crate::host_firewall`]).

use crate::config::HostBridge;
use crate::driver::NicSpec;
use crate::host_firewall::Port;
use crate::network::{Network, Nic};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    #[error("interface {0}: {1}")]
    Invalid(String, &'static str),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The host's guest networks.
pub struct HostNetwork {
    bridges: Vec<HostBridge>,
    /// dnsmasq's files: `<bridge>.pid`, `<bridge>.leases`,
    /// `<bridge>.hosts/<instance>-<n>`.
    dir: PathBuf,
    /// Bridges and daemons are made by one launch at a time.
    setup: Mutex<()>,
}

/// One interface as this host carries it.
struct Plugged<'a> {
    index: usize,
    masquerade: bool,
    nic: &'a Nic,
    bridge: &'a str,
    tap: String,
}

impl HostNetwork {
    pub fn new(bridges: Vec<HostBridge>, data_dir: &Path) -> HostNetwork {
        HostNetwork {
            bridges,
            dir: data_dir.join("networks"),
            setup: Mutex::new(()),
        }
    }

    /// The interfaces of an instance this host carries (those on a network
    /// it has a bridge for), with their taps.
    fn plugged<'a>(&'a self, id: &str, nics: &'a [Nic]) -> Vec<Plugged<'a>> {
        nics.iter()
            .enumerate()
            .filter_map(|(i, nic)| {
                let b = self.bridges.iter().find(|b| b.network == nic.network)?;
                Some(Plugged {
                    index: i,
                    nic,
                    masquerade: b.masquerade,
                    bridge: &b.bridge,
                    tap: nic.tap(id, i),
                })
            })
            .collect()
    }

    /// What the driver attaches: a virtio-net interface per tap.
    pub fn specs(&self, id: &str, nics: &[Nic]) -> Vec<NicSpec> {
        self.plugged(id, nics)
            .into_iter()
            .map(|p| NicSpec {
                tap: p.tap,
                mac: p.nic.mac.clone(),
            })
            .collect()
    }

    /// The interfaces the host firewall guards ([`crate::host_firewall`]).
    pub fn ports(&self, id: &str, nics: &[Nic]) -> Vec<Port> {
        self.plugged(id, nics)
            .into_iter()
            .map(|p| Port {
                server_id: id.to_string(),
                index: p.index,
                mac: p.nic.mac.clone(),
                address: p.nic.address.to_string(),
                masquerade: p.masquerade.then(|| p.nic.cidr.clone()),
                tap: p.tap,
            })
            .collect()
    }

    /// Before a launch: the bridges and their DHCP servers, a DHCP entry
    /// and a tap per interface.
    pub fn plug(&self, id: &str, hostname: &str, nics: &[Nic]) -> Result<(), NetError> {
        let _one = self.setup.lock().unwrap_or_else(|p| p.into_inner());
        for p in self.plugged(id, nics) {
            let Some(subnet) = p.nic.subnet() else {
                return Err(NetError::Invalid(p.tap, "no network address"));
            };
            ensure_bridge(p.bridge, &subnet)?;
            let hosts = self.hosts_dir(p.bridge);
            std::fs::create_dir_all(&hosts)?;
            write_atomic(
                &hosts.join(&p.tap),
                &host_entry(&p.nic.mac, p.nic.address, hostname),
            )?;
            self.ensure_dhcp(p.bridge, &subnet)?;
            self.reload_dhcp(p.bridge);
            if link_exists(&p.tap) {
                ip(&["link", "del", &p.tap])?;
            }
            ip(&["tuntap", "add", "dev", &p.tap, "mode", "tap"])?;
            ip(&["link", "set", &p.tap, "master", p.bridge])?;
            ip(&["link", "set", &p.tap, "up"])?;
        }
        Ok(())
    }

    /// After a delete (or a failed launch): the taps and DHCP entries go;
    /// the bridge and its DHCP server stay for the next guest.
    pub fn unplug(&self, id: &str, nics: &[Nic]) {
        let _one = self.setup.lock().unwrap_or_else(|p| p.into_inner());
        for p in self.plugged(id, nics) {
            if link_exists(&p.tap) {
                if let Err(e) = ip(&["link", "del", &p.tap]) {
                    tracing::warn!(tap = %p.tap, error = %e, "a tap was not removed");
                }
            }
            // The lease goes too (what nova-network's release_dhcp did):
            // dnsmasq keeps an address leased to a MAC that is gone and
            // would not give it to the next guest handed that address.
            let released = run(
                "dhcp_release",
                &[
                    p.bridge.to_string(),
                    p.nic.address.to_string(),
                    p.nic.mac.clone(),
                ],
            );
            if let Err(e) = released {
                tracing::warn!(tap = %p.tap, error = %e, "a DHCP lease was not released");
            }
            match std::fs::remove_file(self.hosts_dir(p.bridge).join(&p.tap)) {
                Ok(()) => self.reload_dhcp(p.bridge),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(tap = %p.tap, error = %e, "a DHCP entry was not removed"),
            }
        }
    }

    /// The DHCP entries a bridge's server has (one file per interface).
    pub fn dhcp_entries(&self, bridge: &str) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.hosts_dir(bridge)) else {
            return Vec::new();
        };
        let mut out: Vec<String> = dir
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .map(|s| s.trim().to_string())
            .collect();
        out.sort();
        out
    }

    fn hosts_dir(&self, bridge: &str) -> PathBuf {
        self.dir.join(format!("{bridge}.hosts"))
    }

    fn pid_file(&self, bridge: &str) -> PathBuf {
        self.dir.join(format!("{bridge}.pid"))
    }

    fn dhcp_pid(&self, bridge: &str) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file(bridge))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains("dnsmasq")
            .then_some(pid)
    }

    fn ensure_dhcp(&self, bridge: &str, subnet: &Network) -> Result<(), NetError> {
        if self.dhcp_pid(bridge).is_some() {
            return Ok(());
        }
        let args = dnsmasq_args(
            bridge,
            subnet,
            &self.hosts_dir(bridge),
            &self.dir.join(format!("{bridge}.leases")),
            &self.pid_file(bridge),
        );
        // dnsmasq forks into the background once it listens: its exit
        // status says whether it started.
        run("dnsmasq", &args)
    }

    /// dnsmasq re-reads its host entries on SIGHUP.
    fn reload_dhcp(&self, bridge: &str) {
        let Some(pid) = self
            .dhcp_pid(bridge)
            .and_then(|p| libc::pid_t::try_from(p).ok())
        else {
            return;
        };
        // SAFETY: kill has no memory preconditions; the pid is dnsmasq's
        // (its command line was read just now).
        if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
            let e = io::Error::last_os_error();
            tracing::warn!(%bridge, error = %e, "dnsmasq was not told of a change");
        }
    }
}

/// A host entry for dnsmasq's `--dhcp-hostsdir`: this MAC gets this
/// address and name, for as long as the entry exists.
pub fn host_entry(mac: &str, address: Ipv4Addr, hostname: &str) -> String {
    format!("{mac},{address},{hostname},infinite\n")
}

/// dnsmasq for one bridge: DHCP only (`--port=0`: no DNS), on that bridge
/// only, static addresses only (the API's), no configuration file of the
/// machine's read.
pub fn dnsmasq_args(
    bridge: &str,
    subnet: &Network,
    hosts: &Path,
    leases: &Path,
    pid: &Path,
) -> Vec<String> {
    let (base, netmask, gateway) = (subnet.base, subnet.netmask(), subnet.gateway());
    vec![
        "--conf-file=/dev/null".into(),
        "--no-hosts".into(),
        "--no-resolv".into(),
        "--port=0".into(),
        "--bind-interfaces".into(),
        format!("--interface={bridge}"),
        "--except-interface=lo".into(),
        format!("--listen-address={gateway}"),
        format!("--dhcp-range={base},static,{netmask}"),
        format!("--dhcp-option=option:router,{gateway}"),
        format!("--dhcp-hostsdir={}", hosts.display()),
        format!("--dhcp-leasefile={}", leases.display()),
        format!("--pid-file={}", pid.display()),
        "--dhcp-no-override".into(),
        "--user=root".into(),
    ]
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The bridge, up, with the network's gateway and the metadata service's
/// address ([`crate::metadata_service`]), which guests reach through the
/// gateway.
fn ensure_bridge(bridge: &str, subnet: &Network) -> Result<(), NetError> {
    if !link_exists(bridge) {
        ip(&["link", "add", "name", bridge, "type", "bridge"])?;
    }
    for address in [
        format!("{}/{}", subnet.gateway(), subnet.prefix),
        format!("{}/32", crate::metadata_service::ADDRESS),
    ] {
        ip(&["addr", "replace", &address, "dev", bridge])?;
    }
    ip(&["link", "set", bridge, "up"])
}

fn ip(args: &[&str]) -> Result<(), NetError> {
    let owned: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    run("ip", &owned)
}

fn run(program: &str, args: &[String]) -> Result<(), NetError> {
    let out = Command::new(program).args(args).output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetError::Command {
        command: format!("{program} {}", args.join(" ")),
        message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(network: &str) -> Nic {
        Nic {
            network_id: "id".into(),
            network: network.into(),
            cidr: "10.42.0.0/24".into(),
            address: Ipv4Addr::new(10, 42, 0, 5),
            mac: "fa:16:3e:0a:0b:0c".into(),
        }
    }

    #[test]
    fn only_networks_with_a_bridge_here_are_attached() {
        let dir = tempfile::tempdir().unwrap();
        let net = HostNetwork::new(
            vec![HostBridge {
                network: "private".into(),
                bridge: "nubr0".into(),
                masquerade: false,
            }],
            dir.path(),
        );
        let nics = [nic("private"), nic("elsewhere")];
        let specs = net.specs("0f1e2d3c-4b5a-4978-8877-665544332211", &nics);
        assert_eq!(
            specs,
            vec![NicSpec {
                tap: "tap0f1e2d3c4b0".into(),
                mac: "fa:16:3e:0a:0b:0c".into()
            }]
        );
        assert!(net.dhcp_entries("nubr0").is_empty());
    }

    #[test]
    fn dnsmasq_serves_static_addresses_on_its_bridge_only() {
        let args = dnsmasq_args(
            "nubr0",
            &nic("private").subnet().unwrap(),
            Path::new("/d/h"),
            Path::new("/d/l"),
            Path::new("/d/p"),
        );
        for want in [
            "--port=0",
            "--conf-file=/dev/null",
            "--interface=nubr0",
            "--bind-interfaces",
            "--listen-address=10.42.0.1",
            "--dhcp-range=10.42.0.0,static,255.255.255.0",
            "--dhcp-option=option:router,10.42.0.1",
            "--dhcp-hostsdir=/d/h",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
        }
        assert_eq!(
            host_entry("fa:16:3e:0a:0b:0c", Ipv4Addr::new(10, 42, 0, 5), "vm-1"),
            "fa:16:3e:0a:0b:0c,10.42.0.5,vm-1,infinite\n"
        );
    }
}
