//! Fixed addresses: the API hands each new server's interfaces their
//! addresses out of its networks ([`crate::network`]), one record per
//! address (`fixed_ip/<network id>/<address>` → the server's id) written
//! with insert-if-absent, so that two servers asking at once never get
//! the same address; deleting a server gives its addresses back.

use crate::db::{ComputeDb, Kind};
use crate::network::{mac_for, Network, Nic, Requested};
use serde::{Deserialize, Serialize};
use service_kit::json_store::StoreError;
use std::collections::HashSet;
use std::net::Ipv4Addr;

/// Who holds an address.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    pub server_id: String,
    pub address: Ipv4Addr,
}

#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    #[error("Network {0} could not be found.")]
    UnknownNetwork(String),
    #[error("Fixed IP address {0} is not a valid address on network {1}.")]
    NotInNetwork(Ipv4Addr, String),
    #[error("Fixed IP address {0} is already in use on instance {1}.")]
    InUse(Ipv4Addr, String),
    #[error("Zero fixed IPs available.")]
    Exhausted,
    #[error("the compute database: {0}")]
    Store(#[from] StoreError),
}

fn key(network_id: &str, ip: Ipv4Addr) -> String {
    format!("{network_id}/{ip}")
}

/// Addresses for the interfaces `requested` asks for, taken for
/// `server_id`. On any failure, whatever this call took is given back.
pub fn allocate(
    db: &ComputeDb,
    networks: &[Network],
    server_id: &str,
    requested: &Requested,
) -> Result<Vec<Nic>, AllocError> {
    let wanted: Vec<(&Network, Option<Ipv4Addr>)> = match requested {
        Requested::None => Vec::new(),
        // No network configured: a guest without an interface, as Nova's
        // `auto` gives when there is nothing to allocate from.
        Requested::Auto => networks.first().map(|n| (n, None)).into_iter().collect(),
        Requested::List(items) => {
            let mut out = Vec::new();
            for item in items {
                let net = networks
                    .iter()
                    .find(|n| n.id == item.network_id)
                    .ok_or_else(|| AllocError::UnknownNetwork(item.network_id.clone()))?;
                if let Some(ip) = item.fixed_ip {
                    if !net.is_guest_address(ip) {
                        return Err(AllocError::NotInNetwork(ip, net.id.clone()));
                    }
                }
                out.push((net, item.fixed_ip));
            }
            out
        }
    };
    let mut nics: Vec<Nic> = Vec::new();
    for (net, fixed) in wanted {
        match take(db, net, server_id, fixed) {
            Ok(address) => nics.push(Nic {
                network_id: net.id.clone(),
                network: net.name.clone(),
                cidr: net.cidr(),
                address,
                mac: mac_for(server_id, &net.id),
            }),
            Err(e) => {
                release(db, server_id, &nics);
                return Err(e);
            }
        }
    }
    Ok(nics)
}

/// One address on `net`: `fixed` if free, else the lowest free one.
fn take(
    db: &ComputeDb,
    net: &Network,
    server_id: &str,
    fixed: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, AllocError> {
    let record = |address| Allocation {
        server_id: server_id.to_string(),
        address,
    };
    if let Some(ip) = fixed {
        if db.insert(Kind::FixedIp, &key(&net.id, ip), &record(ip))? {
            return Ok(ip);
        }
        let holder: Option<Allocation> = db.get(Kind::FixedIp, &key(&net.id, ip))?;
        return Err(AllocError::InUse(
            ip,
            holder.map(|h| h.server_id).unwrap_or_default(),
        ));
    }
    let held: HashSet<Ipv4Addr> = db
        .all_under::<Allocation>(Kind::FixedIp, &format!("{}/", net.id))?
        .into_iter()
        .map(|a| a.address)
        .collect();
    // Another server may take a candidate between the scan and the insert:
    // the insert tells, and the next candidate is tried.
    for ip in net.guest_addresses().filter(|ip| !held.contains(ip)) {
        if db.insert(Kind::FixedIp, &key(&net.id, ip), &record(ip))? {
            return Ok(ip);
        }
    }
    Err(AllocError::Exhausted)
}

/// Gives back the addresses of `nics` that `server_id` still holds. One
/// handed on to another server since (a second delete of this one, a
/// stale record) stays with it. No race: while this server holds an
/// address nobody else can take it, so a record found to be its own is
/// still its own when it is removed. Best effort: a record left behind
/// names its server.
pub fn release(db: &ComputeDb, server_id: &str, nics: &[Nic]) {
    for nic in nics {
        let k = key(&nic.network_id, nic.address);
        let freed = match db.get::<Allocation>(Kind::FixedIp, &k) {
            Ok(Some(a)) if a.server_id == server_id => db.delete(Kind::FixedIp, &k),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = freed {
            tracing::warn!(address = %nic.address, error = %e, "a fixed address was not released");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{NetworkConfig, RequestedNic};

    fn setup() -> (tempfile::TempDir, ComputeDb, Vec<Network>) {
        let dir = tempfile::tempdir().unwrap();
        let db = ComputeDb::open(&dir.path().join("db")).unwrap();
        let nets = vec![Network::parse(&NetworkConfig {
            name: "tiny".into(),
            cidr: "10.9.0.0/29".into(),
        })
        .unwrap()];
        (dir, db, nets)
    }

    #[test]
    fn addresses_are_handed_out_once_and_come_back() {
        let (_d, db, nets) = setup();
        let mut got = Vec::new();
        for i in 0..5 {
            let nics = allocate(&db, &nets, &format!("s{i}"), &Requested::Auto).unwrap();
            assert_eq!(nics.len(), 1);
            got.push(nics);
        }
        let addrs: Vec<String> = got.iter().map(|n| n[0].address.to_string()).collect();
        assert_eq!(
            addrs,
            ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"]
        );
        assert!(matches!(
            allocate(&db, &nets, "s5", &Requested::Auto),
            Err(AllocError::Exhausted)
        ));
        release(&db, "s2", &got[2]);
        let again = allocate(&db, &nets, "s6", &Requested::Auto).unwrap();
        assert_eq!(again[0].address.to_string(), "10.9.0.4");
        // s2 released twice (a repeated delete): s6's address stays s6's.
        release(&db, "s2", &got[2]);
        assert!(matches!(
            allocate(&db, &nets, "s7", &Requested::Auto),
            Err(AllocError::Exhausted)
        ));
        assert_eq!(
            allocate(&db, &nets, "s7", &Requested::None).unwrap(),
            vec![]
        );
    }

    #[test]
    fn a_taken_fixed_address_names_its_holder_and_nothing_is_kept() {
        let (_d, db, nets) = setup();
        let fixed = |ip: &str| {
            Requested::List(vec![RequestedNic {
                network_id: nets[0].id.clone(),
                fixed_ip: Some(ip.parse().unwrap()),
            }])
        };
        allocate(&db, &nets, "first", &fixed("10.9.0.5")).unwrap();
        // Two interfaces: the first would be free, the second is taken;
        // the first is given back.
        let two = Requested::List(vec![
            RequestedNic {
                network_id: nets[0].id.clone(),
                fixed_ip: Some("10.9.0.6".parse().unwrap()),
            },
            RequestedNic {
                network_id: nets[0].id.clone(),
                fixed_ip: Some("10.9.0.5".parse().unwrap()),
            },
        ]);
        match allocate(&db, &nets, "second", &two) {
            Err(AllocError::InUse(ip, by)) => {
                assert_eq!(ip.to_string(), "10.9.0.5");
                assert_eq!(by, "first");
            }
            other => panic!("{other:?}"),
        }
        allocate(&db, &nets, "third", &fixed("10.9.0.6")).unwrap();
        for bad in ["10.9.0.1", "10.9.0.7", "10.9.1.2"] {
            assert!(matches!(
                allocate(&db, &nets, "x", &fixed(bad)),
                Err(AllocError::NotInNetwork(..))
            ));
        }
        let unknown = Requested::List(vec![RequestedNic {
            network_id: "nope".into(),
            fixed_ip: None,
        }]);
        assert!(matches!(
            allocate(&db, &nets, "x", &unknown),
            Err(AllocError::UnknownNetwork(_))
        ));
    }

    #[test]
    fn racing_servers_never_share_an_address() {
        let (_d, db, nets) = setup();
        let db = std::sync::Arc::new(db);
        let results: Vec<Result<Vec<Nic>, AllocError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (db, nets) = (db.clone(), &nets);
                    s.spawn(move || allocate(&db, nets, &format!("r{i}"), &Requested::Auto))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut addrs: Vec<Ipv4Addr> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|n| n[0].address)
            .collect();
        assert_eq!(addrs.len(), 5, "five addresses in a /29");
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), 5, "no address twice");
        assert_eq!(
            results
                .iter()
                .filter(|r| matches!(r, Err(AllocError::Exhausted)))
                .count(),
            3
        );
    }
}
