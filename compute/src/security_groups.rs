//! Security groups as nova-network kept them (`os-security-groups`), the
//! pure part: groups of ingress rules per project, the rules' checks with
//! Nova's messages, and what a host must enforce ([`ingress_of`]): for
//! each guest interface, the traffic allowed in, with source groups
//! resolved to their members' addresses. Egress is not filtered, as in
//! nova-network. [`crate::host_firewall`] turns the result into nftables.
//!
//! Every project has a group `default`, made on first use, whose one rule
//! lets its members reach each other (any protocol); a server names
//! `default` unless it asks for other groups.

use crate::instance::{Server, VmState};
use crate::network::Nic;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

pub const DEFAULT_GROUP: &str = "default";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub description: String,
    /// The owner's account (Nova's project).
    pub account: String,
    pub rules: Vec<Rule>,
}

/// One ingress rule: traffic of `protocol` (any when None) on `ports`
/// from `source`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub protocol: Option<Protocol>,
    /// TCP/UDP: first and last port. ICMP: type and code, -1 for any.
    /// None with no protocol.
    pub ports: Option<(i32, i32)>,
    pub source: Source,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// An IPv4 network, normalized (`10.0.0.0/8`).
    Cidr(String),
    /// The members of a group of the same project, by id.
    Group(String),
}

/// A rule as a client asks for it (`os-security-group-rules`), before
/// its checks.
#[derive(Clone, Debug, Default)]
pub struct RuleRequest {
    pub ip_protocol: Option<String>,
    pub from_port: Option<String>,
    pub to_port: Option<String>,
    pub cidr: Option<String>,
    pub group_id: Option<String>,
}

/// A refused rule, with Nova's message (all are 400 Bad Request).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRule(pub String);

/// Checks a rule as Nova's `_new_ingress_rule` does: a CIDR rule needs a
/// protocol and both ports; a group rule may leave all three out (any
/// traffic); TCP/UDP ports 1-65535 in order, ICMP type and code -1-255.
/// The source group's existence is the caller's to check.
pub fn parse_rule(id: String, r: &RuleRequest) -> Result<Rule, InvalidRule> {
    let source = match (&r.group_id, &r.cidr) {
        (Some(_), Some(_)) => {
            return Err(InvalidRule(
                "Only one of cidr and group_id may be given.".into(),
            ))
        }
        (Some(g), None) => Source::Group(g.clone()),
        (None, cidr) => Source::Cidr(normalize_cidr(cidr.as_deref().unwrap_or("0.0.0.0/0"))?),
    };
    let protocol = r.ip_protocol.as_deref().filter(|p| !p.is_empty());
    let (protocol, ports) = match (protocol, &r.from_port, &r.to_port) {
        (Some(p), Some(from), Some(to)) => {
            let protocol = match p.to_ascii_lowercase().as_str() {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "icmp" => Protocol::Icmp,
                _ => return Err(InvalidRule(format!("Invalid IP protocol {p}."))),
            };
            let (Ok(from), Ok(to)) = (from.trim().parse::<i32>(), to.trim().parse::<i32>()) else {
                return Err(InvalidRule(if protocol == Protocol::Icmp {
                    "Type and Code must be integers for ICMP protocol type".into()
                } else {
                    "To and From ports must be integers".into()
                }));
            };
            let range = |msg: &str| InvalidRule(format!("Invalid port range {from}:{to}. {msg}"));
            match protocol {
                Protocol::Tcp | Protocol::Udp if from > to => {
                    return Err(range("Former value cannot be greater than the later"))
                }
                Protocol::Tcp | Protocol::Udp if from < 1 || to > 65535 => {
                    return Err(range(&format!(
                        "Valid {} ports should be between 1-65535",
                        protocol.name().to_ascii_uppercase()
                    )))
                }
                Protocol::Icmp if !(-1..=255).contains(&from) || !(-1..=255).contains(&to) => {
                    return Err(range("For ICMP, the type:code must be valid"))
                }
                _ => {}
            }
            (Some(protocol), Some((from, to)))
        }
        _ if matches!(source, Source::Cidr(_)) => {
            return Err(InvalidRule(
                "Not enough parameters to build a valid rule.".into(),
            ))
        }
        _ => (None, None),
    };
    Ok(Rule {
        id,
        protocol,
        ports,
        source,
    })
}

/// `a.b.c.d/n` with the host bits cleared (a bare address is its /32);
/// Nova's message otherwise.
pub fn normalize_cidr(cidr: &str) -> Result<String, InvalidRule> {
    let net = match cidr.parse::<Ipv4Net>() {
        Ok(net) => net.trunc(),
        Err(_) => cidr
            .parse::<Ipv4Addr>()
            .map(Ipv4Net::from)
            .map_err(|_| InvalidRule(format!("{cidr} is not a valid IP network.")))?,
    };
    Ok(net.to_string())
}

/// Whether two rules allow the same traffic (Nova refuses the second).
pub fn same_traffic(a: &Rule, b: &Rule) -> bool {
    a.protocol == b.protocol && a.ports == b.ports && a.source == b.source
}

/// The `default` group of an account: its id is derived from the account
/// so that two requests making it at once make one.
pub fn default_group(account: &str) -> SecurityGroup {
    let id = crate::network::stable_uuid(&format!("security-group:{account}:default"));
    SecurityGroup {
        rules: vec![Rule {
            id: crate::network::stable_uuid(&format!("security-group-rule:{id}:members")),
            protocol: None,
            ports: None,
            source: Source::Group(id.clone()),
        }],
        id,
        name: DEFAULT_GROUP.into(),
        description: "default".into(),
        account: account.into(),
    }
}

/// Whether a live server is in a group (of its own project, by name).
pub fn is_member(s: &Server, g: &SecurityGroup) -> bool {
    s.vm_state != VmState::Deleted && s.account == g.account && s.security_groups.contains(&g.name)
}

/// What one guest interface lets in: the rules of the server's groups,
/// each with its sources as networks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardedNic {
    pub server_id: String,
    /// Index among the server's interfaces (names its tap on the host).
    pub index: usize,
    pub address: String,
    pub mac: String,
    pub ingress: Vec<Ingress>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ingress {
    pub protocol: Option<Protocol>,
    pub ports: Option<(i32, i32)>,
    /// Networks (`a.b.c.d/n`); never empty.
    pub sources: Vec<String>,
}

/// The interfaces of `host`'s servers and what each lets in. `servers`
/// are all servers (a source group's members may run anywhere); `groups`
/// all groups. A rule whose source group has no members allows nothing
/// and is left out.
pub fn ingress_of(host: &str, servers: &[Server], groups: &[SecurityGroup]) -> Vec<GuardedNic> {
    let members = |group_id: &str| -> Vec<String> {
        let Some(group) = groups.iter().find(|g| g.id == group_id) else {
            return Vec::new();
        };
        let mut addrs: Vec<String> = servers
            .iter()
            .filter(|s| is_member(s, group))
            .flat_map(|s| s.guest.nics.iter().map(|n| format!("{}/32", n.address)))
            .collect();
        addrs.sort();
        addrs.dedup();
        addrs
    };
    let mut out = Vec::new();
    for s in servers
        .iter()
        .filter(|s| s.vm_state != VmState::Deleted && s.host.as_deref() == Some(host))
    {
        let mut ingress: Vec<Ingress> = Vec::new();
        for g in groups.iter().filter(|g| is_member(s, g)) {
            for r in &g.rules {
                let sources = match &r.source {
                    Source::Cidr(c) => vec![c.clone()],
                    Source::Group(id) => members(id),
                };
                let rule = Ingress {
                    protocol: r.protocol,
                    ports: r.ports,
                    sources,
                };
                if !rule.sources.is_empty() && !ingress.contains(&rule) {
                    ingress.push(rule);
                }
            }
        }
        for (index, nic) in s.guest.nics.iter().enumerate() {
            out.push(guarded(s, index, nic, ingress.clone()));
        }
    }
    out
}

fn guarded(s: &Server, index: usize, nic: &Nic, ingress: Vec<Ingress>) -> GuardedNic {
    GuardedNic {
        server_id: s.id.clone(),
        index,
        address: nic.address.to_string(),
        mac: nic.mac.clone(),
        ingress,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(p: &str, from: &str, to: &str) -> RuleRequest {
        RuleRequest {
            ip_protocol: Some(p.into()),
            from_port: Some(from.into()),
            to_port: Some(to.into()),
            ..Default::default()
        }
    }

    fn refused(r: RuleRequest) -> String {
        parse_rule("r".into(), &r).unwrap_err().0
    }

    #[test]
    fn rules_are_checked_as_nova_checks_them() {
        let ssh = parse_rule("r".into(), &req("TCP", "22", "22")).unwrap();
        assert_eq!(ssh.protocol, Some(Protocol::Tcp));
        assert_eq!(ssh.ports, Some((22, 22)));
        assert_eq!(ssh.source, Source::Cidr("0.0.0.0/0".into()));
        let ping = parse_rule("r".into(), &req("icmp", "-1", "-1")).unwrap();
        assert_eq!(ping.ports, Some((-1, -1)));
        assert_eq!(refused(req("sctp", "1", "2")), "Invalid IP protocol sctp.");
        assert_eq!(
            refused(req("tcp", "80", "22")),
            "Invalid port range 80:22. Former value cannot be greater than the later"
        );
        assert_eq!(
            refused(req("udp", "0", "10")),
            "Invalid port range 0:10. Valid UDP ports should be between 1-65535"
        );
        assert_eq!(
            refused(req("tcp", "1", "65536")),
            "Invalid port range 1:65536. Valid TCP ports should be between 1-65535"
        );
        assert_eq!(
            refused(req("icmp", "256", "0")),
            "Invalid port range 256:0. For ICMP, the type:code must be valid"
        );
        assert_eq!(
            refused(req("tcp", "x", "2")),
            "To and From ports must be integers"
        );
        assert_eq!(
            refused(req("icmp", "x", "2")),
            "Type and Code must be integers for ICMP protocol type"
        );
        // A CIDR rule needs protocol and ports; a group rule does not.
        assert_eq!(
            refused(RuleRequest {
                cidr: Some("10.0.0.0/8".into()),
                ..Default::default()
            }),
            "Not enough parameters to build a valid rule."
        );
        let members = parse_rule(
            "r".into(),
            &RuleRequest {
                group_id: Some("g".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((members.protocol, members.ports), (None, None));
        let mut bad_cidr = req("tcp", "1", "2");
        bad_cidr.cidr = Some("10.0.0.300/8".into());
        assert_eq!(refused(bad_cidr), "10.0.0.300/8 is not a valid IP network.");
        let mut both = req("tcp", "1", "2");
        both.cidr = Some("10.0.0.0/8".into());
        both.group_id = Some("g".into());
        assert!(refused(both).contains("Only one"));
    }

    #[test]
    fn networks_lose_their_host_bits() {
        assert_eq!(normalize_cidr("10.1.2.3/8").unwrap(), "10.0.0.0/8");
        assert_eq!(normalize_cidr("10.1.2.3").unwrap(), "10.1.2.3/32");
        assert_eq!(normalize_cidr("1.2.3.4/0").unwrap(), "0.0.0.0/0");
        for bad in ["10.0.0.0/33", "10.0.0/8", "x/1", "10.0.0.0/-1", ""] {
            assert!(normalize_cidr(bad).is_err(), "{bad}");
        }
    }

    fn server(id: &str, host: &str, account: &str, groups: &[&str], addr: &str) -> Server {
        let mut s: Server = serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "account": account, "user": "u", "image_id": "i",
            "flavor": {"id": "1", "name": "t", "vcpus": 1, "ram": 64, "disk": 1},
            "requested_zone": null, "group": null, "host": host,
            "availability_zone": null, "vm_state": "active", "task_state": null,
            "power_state": null, "fault": null, "metadata": {}, "created": "",
            "updated": "", "launched_at": null,
        }))
        .unwrap();
        s.security_groups = groups.iter().map(|g| g.to_string()).collect();
        s.guest.nics = vec![serde_json::from_value(serde_json::json!({
            "network_id": "n", "network": "private", "cidr": "10.42.0.0/24",
            "address": addr, "mac": "fa:16:3e:00:00:01",
        }))
        .unwrap()];
        s
    }

    #[test]
    fn a_host_enforces_its_guests_groups_with_members_resolved() {
        let default = default_group("A");
        let mut web = SecurityGroup {
            id: "web".into(),
            name: "web".into(),
            description: String::new(),
            account: "A".into(),
            rules: vec![parse_rule("ssh".into(), &req("tcp", "22", "22")).unwrap()],
        };
        web.rules.push(Rule {
            id: "from-default".into(),
            protocol: Some(Protocol::Icmp),
            ports: Some((-1, -1)),
            source: Source::Group(default.id.clone()),
        });
        let servers = vec![
            server("a", "h1", "A", &["default"], "10.42.0.2"),
            server("b", "h2", "A", &["default", "web"], "10.42.0.3"),
            server("c", "h1", "A", &["web"], "10.42.0.4"),
        ];
        let groups = vec![default.clone(), web];
        let h1 = ingress_of("h1", &servers, &groups);
        assert_eq!(h1.len(), 2, "only h1's guests: {h1:?}");
        let a = &h1[0];
        assert_eq!(
            (a.server_id.as_str(), a.address.as_str()),
            ("a", "10.42.0.2")
        );
        // default: its members, on any host, any protocol.
        assert_eq!(
            a.ingress,
            [Ingress {
                protocol: None,
                ports: None,
                sources: vec!["10.42.0.2/32".into(), "10.42.0.3/32".into()],
            }]
        );
        let c = &h1[1];
        assert_eq!(c.ingress.len(), 2);
        assert_eq!(c.ingress[0].sources, ["0.0.0.0/0"]);
        assert_eq!(c.ingress[1].sources, ["10.42.0.2/32", "10.42.0.3/32"]);
        // A deleted member is no source; a group without members allows nothing.
        let mut gone = servers.clone();
        gone[0].vm_state = VmState::Deleted;
        gone[1].vm_state = VmState::Deleted;
        let c = &ingress_of("h1", &gone, &groups)[0];
        assert_eq!(c.ingress.len(), 1, "{c:?}");
        // Another project's group of the same name is not the server's.
        let mut foreign = groups[0].clone();
        foreign.account = "B".into();
        let none = ingress_of("h1", &servers[..1], &[foreign]);
        assert!(none[0].ingress.is_empty());
    }

    #[test]
    fn the_default_group_is_the_same_whoever_makes_it() {
        assert_eq!(default_group("A"), default_group("A"));
        assert_ne!(default_group("A").id, default_group("B").id);
    }
}
