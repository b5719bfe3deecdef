//! A compute host's enforcement of security groups, with nftables (what
//! nova-network did with iptables): the whole rule set of the host's
//! guests is rendered from what the API says each interface lets in
//! ([`crate::security_groups::GuardedNic`]) and replaced in one `nft -f`
//! transaction whenever it changes.
//!
//! Two tables, both named `nubo`:
//! - `inet nubo`, chain `forward`: replies of allowed connections pass
//!   (`ct state established,related`); every other packet to a guest's
//!   address goes through that interface's chain of ingress rules and is
//!   dropped when none matches. Traffic between guests on one bridge is
//!   bridged, not routed; `net.bridge.bridge-nf-call-iptables` (set by
//!   the agent) passes it through this hook, so that connection tracking
//!   applies (this kernel has no conntrack in the bridge family). Matching
//!   the destination address is matching the interface, because of:
//! - `bridge nubo`, chain `prerouting`: anti-spoofing. A frame from a
//!   guest's tap must carry its MAC, IPv4 packets its address (or
//!   0.0.0.0, a DHCP request), ARP its address; IPv6 from guests is
//!   dropped (guest networks are IPv4).
//!
//! Traffic between a guest and its host (DHCP, metadata, the gateway) is
//! not forwarded and not filtered; egress is not filtered, as in
//! nova-network. An interface the API has said nothing of yet lets
//! nothing in.

use crate::host_network::NetError;
use crate::security_groups::{GuardedNic, Ingress, Protocol};
use std::fmt::Write;
use std::sync::Mutex;

/// One guest interface on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub server_id: String,
    pub index: usize,
    pub tap: String,
    pub mac: String,
    pub address: String,
    /// Its network (`a.b.c.d/n`) when its bridge masquerades outbound
    /// traffic ([`crate::config::HostBridge::masquerade`]).
    pub masquerade: Option<String>,
}

/// The host's firewall: the last word of the API and the rule set applied.
pub struct HostFirewall {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// What the API last said (None: nothing yet since the agent started).
    guarded: Option<Vec<GuardedNic>>,
    applied: Option<String>,
}

const SYSCTL: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// Whether this host can enforce security groups: nft runs and the
/// kernel has br_netfilter (loaded here if it is a module). Changes
/// nothing else.
pub fn available() -> Result<(), NetError> {
    if !std::path::Path::new(SYSCTL).exists() {
        let _ = std::process::Command::new("modprobe")
            .arg("br_netfilter")
            .status();
    }
    if !std::path::Path::new(SYSCTL).exists() {
        return Err(NetError::Command {
            command: "modprobe br_netfilter".into(),
            message: format!("{SYSCTL} is missing: the kernel has no br_netfilter"),
        });
    }
    nft(&["-f", "-"], "list tables\n")
}

impl HostFirewall {
    /// Checks that nftables can be used and lets bridged traffic through
    /// the IPv4 hooks (`bridge-nf-call-iptables`, in the agent's network
    /// namespace).
    pub fn new() -> Result<HostFirewall, NetError> {
        available()?;
        std::fs::write(SYSCTL, "1").map_err(|e| NetError::Command {
            command: format!("writing 1 to {SYSCTL}"),
            message: e.to_string(),
        })?;
        Ok(HostFirewall {
            state: Mutex::new(State::default()),
        })
    }

    /// Renders the rules of `ports` with what the API said (`guarded`, or
    /// its last word when None) and applies them if they changed. Before
    /// the API's first word since the agent started nothing is applied:
    /// the rules already in the kernel stay until it comes (with the first
    /// heartbeat, or a launch, which brings it).
    pub fn update(&self, guarded: Option<Vec<GuardedNic>>, ports: &[Port]) -> Result<(), NetError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = guarded {
            state.guarded = Some(g);
        }
        let Some(said) = state.guarded.as_deref() else {
            return Ok(());
        };
        let rules = render(ports, said);
        if state.applied.as_deref() == Some(rules.as_str()) {
            return Ok(());
        }
        if ports.iter().any(|p| p.masquerade.is_some()) {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
        }
        nft(&["-f", "-"], &rules)?;
        state.applied = Some(rules);
        Ok(())
    }
}

/// Runs `nft` with `args`, `input` on its standard input.
fn nft(args: &[&str], input: &str) -> Result<(), NetError> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("nft")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Command {
            command: "nft (the nftables package)".into(),
            message: e.to_string(),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetError::Command {
        command: format!("nft {}", args.join(" ")),
        message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// The host's whole rule set, as one nft transaction that replaces all
/// three tables (`inet nubo`, `bridge nubo`, `ip nubo_nat`). Pure: the
/// tests read it.
pub fn render(ports: &[Port], guarded: &[GuardedNic]) -> String {
    let mut inet = String::new();
    let mut chains = String::new();
    let mut bridge = String::new();
    let mut nat: Vec<&str> = ports
        .iter()
        .filter_map(|p| p.masquerade.as_deref())
        .collect();
    nat.sort();
    nat.dedup();
    let nat: String = nat
        .iter()
        .map(|net| format!("\t\tip saddr {net} ip daddr != {net} masquerade\n"))
        .collect();
    for p in ports {
        let ingress = guarded
            .iter()
            .find(|g| g.server_id == p.server_id && g.index == p.index && g.address == p.address)
            .map(|g| g.ingress.as_slice())
            .unwrap_or_default();
        let chain = format!("in-{}", p.tap);
        let _ = writeln!(inet, "\t\tip daddr {} jump {chain}", p.address);
        let _ = writeln!(chains, "\tchain {chain} {{");
        for rule in ingress {
            for source in &rule.sources {
                let _ = writeln!(chains, "\t\tip saddr {source}{} accept", matches(rule));
            }
        }
        let _ = writeln!(chains, "\t\tdrop\n\t}}");
        let tap = &p.tap;
        let _ = writeln!(
            bridge,
            "\t\tiifname \"{tap}\" ether saddr != {} drop",
            p.mac
        );
        let _ = writeln!(
            bridge,
            "\t\tiifname \"{tap}\" arp saddr ip != {} drop",
            p.address
        );
        let _ = writeln!(
            bridge,
            "\t\tiifname \"{tap}\" ip saddr != {{ 0.0.0.0, {} }} drop",
            p.address
        );
        let _ = writeln!(bridge, "\t\tiifname \"{tap}\" ether type ip6 drop");
    }
    format!(
        "table inet nubo\ndelete table inet nubo\ntable inet nubo {{\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tct state established,related accept\n\
         {inet}\t}}\n\
         {chains}}}\n\
         table bridge nubo\ndelete table bridge nubo\ntable bridge nubo {{\n\
         \tchain prerouting {{\n\
         \t\ttype filter hook prerouting priority filter; policy accept;\n\
         {bridge}\t}}\n\
         }}\n\
         table ip nubo_nat\ndelete table ip nubo_nat\ntable ip nubo_nat {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         {nat}\t}}\n\
         }}\n"
    )
}

/// The protocol and port part of a rule (empty: any traffic).
fn matches(rule: &Ingress) -> String {
    let ports = |from: i32, to: i32| {
        if from == to {
            from.to_string()
        } else {
            format!("{from}-{to}")
        }
    };
    match (rule.protocol, rule.ports) {
        (None, _) => String::new(),
        (Some(Protocol::Tcp), Some((from, to))) => format!(" tcp dport {}", ports(from, to)),
        (Some(Protocol::Udp), Some((from, to))) => format!(" udp dport {}", ports(from, to)),
        (Some(Protocol::Tcp), None) => " meta l4proto tcp".into(),
        (Some(Protocol::Udp), None) => " meta l4proto udp".into(),
        (Some(Protocol::Icmp), Some((kind, code))) if kind >= 0 && code >= 0 => {
            format!(" icmp type {kind} icmp code {code}")
        }
        (Some(Protocol::Icmp), Some((kind, _))) if kind >= 0 => format!(" icmp type {kind}"),
        (Some(Protocol::Icmp), _) => " meta l4proto icmp".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(id: &str, tap: &str, addr: &str) -> Port {
        Port {
            server_id: id.into(),
            index: 0,
            tap: tap.into(),
            mac: "fa:16:3e:00:00:01".into(),
            address: addr.into(),
            masquerade: None,
        }
    }

    #[test]
    fn each_port_gets_its_rules_and_unknown_ones_drop_everything() {
        let guarded = vec![GuardedNic {
            server_id: "a".into(),
            index: 0,
            address: "10.42.0.2".into(),
            mac: "fa:16:3e:00:00:01".into(),
            ingress: vec![
                Ingress {
                    protocol: None,
                    ports: None,
                    sources: vec!["10.42.0.2/32".into(), "10.42.0.3/32".into()],
                },
                Ingress {
                    protocol: Some(Protocol::Tcp),
                    ports: Some((22, 22)),
                    sources: vec!["0.0.0.0/0".into()],
                },
                Ingress {
                    protocol: Some(Protocol::Udp),
                    ports: Some((1000, 2000)),
                    sources: vec!["10.0.0.0/8".into()],
                },
                Ingress {
                    protocol: Some(Protocol::Icmp),
                    ports: Some((8, -1)),
                    sources: vec!["0.0.0.0/0".into()],
                },
                Ingress {
                    protocol: Some(Protocol::Icmp),
                    ports: Some((-1, -1)),
                    sources: vec!["10.1.0.0/16".into()],
                },
            ],
        }];
        let ports = [
            port("a", "tapa0", "10.42.0.2"),
            port("b", "tapb0", "10.42.0.3"),
        ];
        let text = render(&ports, &guarded);
        let chain_a = text.split("chain in-tapa0 {").nth(1).unwrap();
        let chain_a = &chain_a[..chain_a.find('}').unwrap()];
        let lines: Vec<&str> = chain_a
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(
            lines,
            [
                "ip saddr 10.42.0.2/32 accept",
                "ip saddr 10.42.0.3/32 accept",
                "ip saddr 0.0.0.0/0 tcp dport 22 accept",
                "ip saddr 10.0.0.0/8 udp dport 1000-2000 accept",
                "ip saddr 0.0.0.0/0 icmp type 8 accept",
                "ip saddr 10.1.0.0/16 meta l4proto icmp accept",
                "drop",
            ]
        );
        // b: nothing said of it, nothing in.
        let chain_b = text.split("chain in-tapb0 {").nth(1).unwrap();
        assert_eq!(chain_b[..chain_b.find('}').unwrap()].trim(), "drop");
        assert!(text.contains("ip daddr 10.42.0.2 jump in-tapa0"));
        assert!(text.contains("ip daddr 10.42.0.3 jump in-tapb0"));
        // Anti-spoofing per tap; both tables replaced in one transaction.
        assert!(text.contains("iifname \"tapb0\" ip saddr != { 0.0.0.0, 10.42.0.3 } drop"));
        assert!(text.contains("iifname \"tapb0\" ether saddr != fa:16:3e:00:00:01 drop"));
        assert!(text.contains("iifname \"tapb0\" arp saddr ip != 10.42.0.3 drop"));
        assert!(text.starts_with("table inet nubo\ndelete table inet nubo\n"));
        // A record for another address (a stale word) is not this port's.
        let moved = render(&[port("a", "tapa0", "10.42.0.9")], &guarded);
        let chain = moved.split("chain in-tapa0 {").nth(1).unwrap();
        assert_eq!(chain[..chain.find('}').unwrap()].trim(), "drop");
    }

    #[test]
    fn masquerading_networks_get_one_nat_rule_each() {
        let mut a = port("a", "tapa0", "10.42.0.2");
        a.masquerade = Some("10.42.0.0/24".into());
        let mut b = port("b", "tapb0", "10.42.0.3");
        b.masquerade = Some("10.42.0.0/24".into());
        let text = render(&[a, b, port("c", "tapc0", "10.43.0.2")], &[]);
        assert_eq!(
            text.matches("masquerade").count(),
            1,
            "one rule per network:\n{text}"
        );
        assert!(text.contains("ip saddr 10.42.0.0/24 ip daddr != 10.42.0.0/24 masquerade"));
        assert!(!render(&[], &[]).contains("masquerade"));
    }

    /// What `render` writes is accepted by nftables itself: `nft --check`
    /// (a transaction the kernel validates and discards; nothing changes).
    /// Skipped where nft cannot run (not installed, not root).
    #[test]
    fn nftables_accepts_the_rules() {
        let mut a = port("a", "tapa0", "10.42.0.2");
        a.masquerade = Some("10.42.0.0/24".into());
        let guarded = vec![GuardedNic {
            server_id: "a".into(),
            index: 0,
            address: "10.42.0.2".into(),
            mac: "fa:16:3e:00:00:01".into(),
            ingress: vec![
                Ingress {
                    protocol: Some(Protocol::Icmp),
                    ports: Some((8, 0)),
                    sources: vec!["10.0.0.0/8".into()],
                },
                Ingress {
                    protocol: Some(Protocol::Udp),
                    ports: Some((53, 53)),
                    sources: vec!["0.0.0.0/0".into()],
                },
                Ingress {
                    protocol: None,
                    ports: None,
                    sources: vec!["10.42.0.3/32".into()],
                },
            ],
        }];
        let text = render(&[a, port("b", "tapb0", "10.42.0.3")], &guarded);
        if nft(&["-f", "-"], "list tables\n").is_err() {
            eprintln!("nft cannot run here; the check is skipped");
            return;
        }
        if let Err(e) = nft(&["--check", "-f", "-"], &text) {
            panic!("{e}\n{text}");
        }
    }

    #[test]
    fn no_ports_is_empty_tables() {
        let text = render(&[], &[]);
        assert!(!text.contains("jump") && !text.contains("iifname"));
        assert!(text.contains("ct state established,related accept"));
    }
}
