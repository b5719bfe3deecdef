//! Guest networks, nova-network style: each network is an IPv4 subnet the
//! API hands addresses out of (so that two hosts never give out the same
//! one), with its gateway (`.1`, the host bridge's address) and a stable
//! MAC per instance. Pure: the allocation records live in the compute
//! database ([`crate::fixed_ips`]). Hosts do not plug interfaces yet (no
//! bridge, tap or DHCP): the addresses are the API's and the config
//! drive's (`network_data.json`), not yet on a wire.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::net::Ipv4Addr;

/// A network as the API's configuration defines it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Its label (Nova's `addresses` key).
    pub name: String,
    /// `a.b.c.d/prefix`, prefix 16 to 29.
    pub cidr: String,
}

/// The network `nubo up` defines.
pub fn default_networks() -> Vec<NetworkConfig> {
    vec![NetworkConfig {
        name: "private".into(),
        cidr: "10.42.0.0/24".into(),
    }]
}

/// A network, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// Stable: derived from the name, so a network keeps its id across
    /// restarts without being stored.
    pub id: String,
    pub name: String,
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl Network {
    pub fn parse(c: &NetworkConfig) -> Result<Network, String> {
        let bad = || {
            format!(
                "network {:?}: cidr {:?} is not a.b.c.d/16..29",
                c.name, c.cidr
            )
        };
        if c.name.is_empty() || c.name.len() > 255 {
            return Err(format!("network {:?}: a name of 1 to 255 bytes", c.name));
        }
        let (addr, prefix) = c.cidr.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(16..=29).contains(&prefix) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix);
        if u32::from(addr) & !mask != 0 {
            return Err(format!(
                "network {:?}: {} has host bits set",
                c.name, c.cidr
            ));
        }
        Ok(Network {
            id: id_of(&c.name),
            name: c.name.clone(),
            base: addr,
            prefix,
        })
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - self.prefix)
    }

    pub fn cidr(&self) -> String {
        format!("{}/{}", self.base, self.prefix)
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    /// The hosts' bridge address, which guests route through.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 1)
    }

    /// The addresses guests get: all but the network's own, the gateway
    /// and the broadcast address, in order.
    pub fn guest_addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.base) + 2;
        let broadcast = u32::from(self.base) | !self.mask();
        (first..broadcast).map(Ipv4Addr::from)
    }

    pub fn is_guest_address(&self, ip: Ipv4Addr) -> bool {
        let n = u32::from(ip);
        n & self.mask() == u32::from(self.base)
            && n >= u32::from(self.base) + 2
            && n < (u32::from(self.base) | !self.mask())
    }
}

/// A network's id: a UUID (version 5 layout) of a hash of its name.
fn id_of(name: &str) -> String {
    stable_uuid(&format!("nubo-network:{name}"))
}

/// A UUID (version 5 layout) of a hash of `seed`: the same for the same
/// seed, so ids derived from stored names need no storing of their own.
pub fn stable_uuid(seed: &str) -> String {
    let b: [u8; 16] = Sha256::digest(seed)[..16]
        .try_into()
        .expect("16 of 32 bytes");
    service_kit::ids::uuid_of(b, 5)
}

/// One interface of an instance, as allocated by the API and kept with the
/// server (and sent to its host).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    pub network_id: String,
    pub network: String,
    /// The network's `a.b.c.d/prefix`, for the host's bridge and the guest.
    pub cidr: String,
    pub address: Ipv4Addr,
    pub mac: String,
}

impl Nic {
    /// The tap device's name on the host (15 bytes at most, as Linux
    /// allows): `tap` and the start of the instance id, as Nova names them
    /// after the port.
    pub fn tap(&self, instance_id: &str, index: usize) -> String {
        let id: String = instance_id.chars().filter(|c| *c != '-').take(10).collect();
        format!("tap{id}{index:x}")
    }

    /// The subnet the interface is on (its gateway, netmask...), from the
    /// `cidr` it carries; `None` only for a record not made by
    /// [`crate::fixed_ips`].
    pub fn subnet(&self) -> Option<Network> {
        Network::parse(&NetworkConfig {
            name: self.network.clone(),
            cidr: self.cidr.clone(),
        })
        .ok()
    }

    /// The id of the interface (Nova's `port_id`): stable for the server
    /// and network.
    pub fn port_id(&self, instance_id: &str) -> String {
        stable_uuid(&format!("nubo-port:{instance_id}/{}", self.network_id))
    }
}

/// The MAC of an instance's interface on a network: Nova's `fa:16:3e`
/// prefix and three bytes of a hash, stable for the instance.
pub fn mac_for(instance_id: &str, network_id: &str) -> String {
    let h = Sha256::digest(format!("{instance_id}/{network_id}"));
    format!("fa:16:3e:{:02x}:{:02x}:{:02x}", h[0], h[1], h[2])
}

/// What a server create asks for (`networks`).
#[derive(Clone, Debug, PartialEq)]
pub enum Requested {
    /// `"auto"` or no `networks`: one interface on the first network.
    Auto,
    /// `"none"`: no interface.
    None,
    /// Interfaces on these networks, each maybe with its address.
    List(Vec<RequestedNic>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct RequestedNic {
    pub network_id: String,
    pub fixed_ip: Option<Ipv4Addr>,
}

/// Reads `networks` as Nova does: `"auto"` (or nothing, or `[]`),
/// `"none"`, or a list of
/// `{"uuid", "fixed_ip"}` (`port` needs Neutron, which Nubo is not).
pub fn parse_requested(v: &Value) -> Result<Requested, String> {
    let invalid = |why: &str| format!("Invalid input for field/attribute networks. {why}");
    match v {
        Value::Null => Ok(Requested::Auto),
        Value::String(s) if s == "auto" => Ok(Requested::Auto),
        Value::String(s) if s == "none" => Ok(Requested::None),
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                let Some(obj) = item.as_object() else {
                    return Err(invalid("Each network must be an object."));
                };
                if obj.contains_key("port") {
                    return Err("Ports are not supported: Nubo has no Neutron.".into());
                }
                if let Some(k) = obj
                    .keys()
                    .find(|k| !["uuid", "fixed_ip", "tag"].contains(&k.as_str()))
                {
                    return Err(invalid(&format!("Additional property {k} is not allowed.")));
                }
                let Some(id) = obj.get("uuid").and_then(Value::as_str) else {
                    return Err(invalid("Each network needs a uuid."));
                };
                let fixed_ip = match obj.get("fixed_ip") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(
                        s.parse::<Ipv4Addr>()
                            .map_err(|_| format!("Invalid fixed IP address ({s})"))?,
                    ),
                    Some(_) => return Err(invalid("fixed_ip must be a string.")),
                };
                out.push(RequestedNic {
                    network_id: id.to_string(),
                    fixed_ip,
                });
            }
            // An empty list is what clients send at 2.1 when no network is
            // named (the openstack CLI does): Nova then picks, as `auto`.
            if out.is_empty() {
                return Ok(Requested::Auto);
            }
            Ok(Requested::List(out))
        }
        _ => Err(invalid("It must be \"auto\", \"none\" or a list.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn net(cidr: &str) -> Result<Network, String> {
        Network::parse(&NetworkConfig {
            name: "private".into(),
            cidr: cidr.into(),
        })
    }

    #[test]
    fn a_subnet_gives_out_all_but_its_own_gateway_and_broadcast() {
        let n = net("10.42.0.0/29").unwrap();
        assert_eq!(n.gateway(), Ipv4Addr::new(10, 42, 0, 1));
        assert_eq!(n.netmask(), Ipv4Addr::new(255, 255, 255, 248));
        let all: Vec<Ipv4Addr> = n.guest_addresses().collect();
        assert_eq!(all.first(), Some(&Ipv4Addr::new(10, 42, 0, 2)));
        assert_eq!(all.last(), Some(&Ipv4Addr::new(10, 42, 0, 6)));
        assert_eq!(all.len(), 5);
        for ip in &all {
            assert!(n.is_guest_address(*ip));
        }
        for ip in [
            [10, 42, 0, 0],
            [10, 42, 0, 1],
            [10, 42, 0, 7],
            [10, 42, 1, 2],
        ] {
            assert!(!n.is_guest_address(Ipv4Addr::from(ip)), "{ip:?}");
        }
        assert_eq!(n.cidr(), "10.42.0.0/29");
    }

    #[test]
    fn bad_subnets_are_refused() {
        for bad in [
            "10.42.0.0",
            "10.42.0.1/24",
            "10.42.0.0/30",
            "10.0.0.0/8",
            "x/24",
            "10.42.0.0/x",
        ] {
            assert!(net(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_and_macs_are_stable_and_distinct() {
        let a = net("10.42.0.0/24").unwrap();
        assert_eq!(a.id, net("10.43.0.0/24").unwrap().id, "from the name");
        assert_eq!(a.id.len(), 36);
        let m = mac_for("i1", &a.id);
        assert_eq!(m, mac_for("i1", &a.id));
        assert_ne!(m, mac_for("i2", &a.id));
        assert!(m.starts_with("fa:16:3e:") && m.len() == 17, "{m}");
    }

    #[test]
    fn taps_fit_linux_names() {
        let nic = Nic {
            network_id: "n".into(),
            network: "private".into(),
            cidr: "10.42.0.0/24".into(),
            address: Ipv4Addr::new(10, 42, 0, 2),
            mac: "fa:16:3e:00:00:01".into(),
        };
        let tap = nic.tap("0f1e2d3c-4b5a-4978-8877-665544332211", 0);
        assert_eq!(tap, "tap0f1e2d3c4b0");
        assert!(tap.len() <= 15);
        let subnet = nic.subnet().unwrap();
        assert_eq!(subnet.gateway(), Ipv4Addr::new(10, 42, 0, 1));
        assert_eq!(subnet.netmask(), Ipv4Addr::new(255, 255, 255, 0));
    }

    #[test]
    fn requests_are_read_as_nova_reads_them() {
        assert_eq!(parse_requested(&Value::Null), Ok(Requested::Auto));
        assert_eq!(parse_requested(&json!("auto")), Ok(Requested::Auto));
        assert_eq!(parse_requested(&json!("none")), Ok(Requested::None));
        assert_eq!(parse_requested(&json!([])), Ok(Requested::Auto));
        assert_eq!(
            parse_requested(&json!([{"uuid": "n1", "fixed_ip": "10.42.0.9"}, {"uuid": "n2"}])),
            Ok(Requested::List(vec![
                RequestedNic {
                    network_id: "n1".into(),
                    fixed_ip: Some(Ipv4Addr::new(10, 42, 0, 9))
                },
                RequestedNic {
                    network_id: "n2".into(),
                    fixed_ip: None
                },
            ]))
        );
        for bad in [
            json!("some"),
            json!([{"fixed_ip": "10.42.0.9"}]),
            json!([{"uuid": "n1", "fixed_ip": "10.42.0.300"}]),
            json!([{"uuid": "n1", "port": "p"}]),
            json!([{"uuid": "n1", "colour": "red"}]),
            json!(["n1"]),
            json!(7),
        ] {
            assert!(parse_requested(&bad).is_err(), "{bad}");
        }
    }
}
