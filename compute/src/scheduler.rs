//! Choosing a host for an instance, as Nova's filter scheduler does, as
//! pure functions: filters drop the hosts that cannot take it, weighers
//! score the rest, and the caller tries the candidates in order (retrying
//! on the next when a launch fails). Randomness comes in as a function, so
//! every policy is deterministic under test.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the scheduler knows of a compute host (from its last heartbeat and
/// the claims made since).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub availability_zone: String,
    /// Heartbeats are recent.
    pub up: bool,
    pub vcpus: u32,
    pub vcpus_used: u32,
    pub ram_mb: u64,
    pub ram_used_mb: u64,
    pub disk_gb: u64,
    pub disk_used_gb: u64,
    pub instances: u32,
    /// `x86_64`, `aarch64`...
    pub architecture: String,
    /// Server groups with an instance on this host.
    pub server_groups: Vec<String>,
}

/// What an instance needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    pub vcpus: u32,
    pub ram_mb: u64,
    pub disk_gb: u64,
    pub availability_zone: Option<String>,
    /// The image's properties (`hw_architecture` is honoured).
    pub image_properties: BTreeMap<String, String>,
    /// A server group whose members must be on different hosts.
    pub anti_affinity_group: Option<String>,
}

/// Overcommit allowed per resource (Nova's defaults: 16 vCPUs, 1.5 RAM, 1 disk).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationRatios {
    pub cpu: f64,
    pub ram: f64,
    pub disk: f64,
}

impl Default for AllocationRatios {
    fn default() -> Self {
        AllocationRatios {
            cpu: 16.0,
            ram: 1.5,
            disk: 1.0,
        }
    }
}

/// Weigher multipliers: positive spreads instances (prefers the emptiest
/// host), negative packs them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub free_ram: f64,
    pub free_vcpus: f64,
    /// Applied to the instance count: negative prefers hosts with fewer.
    pub instances: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            free_ram: 1.0,
            free_vcpus: 1.0,
            instances: 0.0,
        }
    }
}

/// The named policies an operator selects in config.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "policy")]
pub enum Policy {
    /// Filters, then weighers (the default).
    FilterWeigher {
        #[serde(default)]
        weights: Weights,
    },
    /// Any host that passes the filters.
    Random,
    /// The host with the fewest instances (then the most free RAM).
    LeastLoaded,
    /// A random host of the requested zone (any zone when none is asked).
    AzRandom,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::FilterWeigher {
            weights: Weights::default(),
        }
    }
}

/// Why no host could take an instance: each host and what ruled it out.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("No valid host was found. {}", .0.iter().map(|(h, r)| format!("{h}: {r}")).collect::<Vec<_>>().join("; "))]
pub struct NoValidHost(pub Vec<(String, String)>);

/// Why `host` cannot take `req`, or `None` if it can.
pub fn refusal(host: &Host, req: &Request, ratios: &AllocationRatios) -> Option<String> {
    if !host.up {
        return Some("host is down (no recent heartbeat)".into());
    }
    let free = |total: f64, used: f64, ratio: f64| total * ratio - used;
    if free(host.vcpus as f64, host.vcpus_used as f64, ratios.cpu) < req.vcpus as f64 {
        return Some(format!("not enough vCPUs ({} wanted)", req.vcpus));
    }
    if free(host.ram_mb as f64, host.ram_used_mb as f64, ratios.ram) < req.ram_mb as f64 {
        return Some(format!("not enough RAM ({} MiB wanted)", req.ram_mb));
    }
    if free(host.disk_gb as f64, host.disk_used_gb as f64, ratios.disk) < req.disk_gb as f64 {
        return Some(format!("not enough disk ({} GiB wanted)", req.disk_gb));
    }
    if let Some(az) = &req.availability_zone {
        if &host.availability_zone != az {
            return Some(format!("not in availability zone {az}"));
        }
    }
    if let Some(arch) = req.image_properties.get("hw_architecture") {
        if &host.architecture != arch {
            return Some(format!(
                "architecture {} is not the image's {arch}",
                host.architecture
            ));
        }
    }
    if let Some(group) = &req.anti_affinity_group {
        if host.server_groups.contains(group) {
            return Some(format!(
                "already runs a member of anti-affinity group {group}"
            ));
        }
    }
    None
}

/// Scales values to 0..1 (min to max); all equal gives all 0, as Nova's
/// weigher normalisation does.
fn normalise(values: &[f64]) -> Vec<f64> {
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    values
        .iter()
        .map(|v| {
            if max > min {
                (v - min) / (max - min)
            } else {
                0.0
            }
        })
        .collect()
}

/// Each host's score: the sum over weighers of multiplier × normalised value.
pub fn weigh(hosts: &[&Host], w: &Weights, ratios: &AllocationRatios) -> Vec<f64> {
    let ram: Vec<f64> = hosts
        .iter()
        .map(|h| h.ram_mb as f64 * ratios.ram - h.ram_used_mb as f64)
        .collect();
    let cpu: Vec<f64> = hosts
        .iter()
        .map(|h| h.vcpus as f64 * ratios.cpu - h.vcpus_used as f64)
        .collect();
    let inst: Vec<f64> = hosts.iter().map(|h| h.instances as f64).collect();
    let (ram, cpu, inst) = (normalise(&ram), normalise(&cpu), normalise(&inst));
    (0..hosts.len())
        .map(|i| w.free_ram * ram[i] + w.free_vcpus * cpu[i] + w.instances * inst[i])
        .collect()
}

/// The hosts to try, best first. `random(n)` returns a number below `n`.
pub fn schedule(
    policy: &Policy,
    hosts: &[Host],
    req: &Request,
    ratios: &AllocationRatios,
    random: &mut dyn FnMut(usize) -> usize,
) -> Result<Vec<String>, NoValidHost> {
    let mut refused = Vec::new();
    let mut fit: Vec<&Host> = Vec::new();
    for h in hosts {
        match refusal(h, req, ratios) {
            Some(why) => refused.push((h.name.clone(), why)),
            None => fit.push(h),
        }
    }
    if fit.is_empty() {
        if hosts.is_empty() {
            refused.push(("-".into(), "no compute hosts are registered".into()));
        }
        return Err(NoValidHost(refused));
    }
    // Ties always break by name, so equal hosts give a stable order.
    fit.sort_by(|a, b| a.name.cmp(&b.name));
    let order: Vec<&Host> = match policy {
        Policy::FilterWeigher { weights } => {
            let scores = weigh(&fit, weights, ratios);
            let mut idx: Vec<usize> = (0..fit.len()).collect();
            idx.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b)));
            idx.into_iter().map(|i| fit[i]).collect()
        }
        Policy::LeastLoaded => {
            let mut v = fit.clone();
            v.sort_by(|a, b| {
                a.instances
                    .cmp(&b.instances)
                    .then(
                        (b.ram_mb - b.ram_used_mb.min(b.ram_mb))
                            .cmp(&(a.ram_mb - a.ram_used_mb.min(a.ram_mb))),
                    )
                    .then(a.name.cmp(&b.name))
            });
            v
        }
        Policy::Random | Policy::AzRandom => shuffled(fit, random),
    };
    Ok(order.into_iter().map(|h| h.name.clone()).collect())
}

/// A Fisher-Yates shuffle driven by `random`.
fn shuffled<'a>(mut v: Vec<&'a Host>, random: &mut dyn FnMut(usize) -> usize) -> Vec<&'a Host> {
    for i in (1..v.len()).rev() {
        let j = random(i + 1).min(i);
        v.swap(i, j);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, az: &str, ram_used: u64, instances: u32) -> Host {
        Host {
            name: name.into(),
            availability_zone: az.into(),
            up: true,
            vcpus: 4,
            vcpus_used: instances,
            ram_mb: 8192,
            ram_used_mb: ram_used,
            disk_gb: 100,
            disk_used_gb: 0,
            instances,
            architecture: "x86_64".into(),
            server_groups: vec![],
        }
    }

    fn tiny() -> Request {
        Request {
            vcpus: 1,
            ram_mb: 512,
            disk_gb: 1,
            ..Default::default()
        }
    }

    fn first(random: usize) -> impl FnMut(usize) -> usize {
        move |n| random % n
    }

    #[test]
    fn filters_say_why_each_host_was_ruled_out() {
        let ratios = AllocationRatios::default();
        let mut down = host("down", "az1", 0, 0);
        down.up = false;
        let full = host("full", "az1", 8192 * 3 / 2, 0);
        let mut arm = host("arm", "az1", 0, 0);
        arm.architecture = "aarch64".into();
        let other_az = host("other", "az2", 0, 0);
        let mut grouped = host("grouped", "az1", 0, 0);
        grouped.server_groups = vec!["g1".into()];
        let mut req = tiny();
        req.availability_zone = Some("az1".into());
        req.image_properties
            .insert("hw_architecture".into(), "x86_64".into());
        req.anti_affinity_group = Some("g1".into());
        let hosts = [down, full, arm, other_az, grouped];
        let err = schedule(&Policy::default(), &hosts, &req, &ratios, &mut first(0)).unwrap_err();
        let reasons: BTreeMap<_, _> = err.0.into_iter().collect();
        assert!(reasons["down"].contains("down"));
        assert!(reasons["full"].contains("RAM"));
        assert!(reasons["arm"].contains("architecture"));
        assert!(reasons["other"].contains("availability zone"));
        assert!(reasons["grouped"].contains("anti-affinity"));
    }

    #[test]
    fn allocation_ratios_allow_overcommit() {
        let mut h = host("h", "az", 8192, 0);
        h.vcpus_used = 60;
        let req = tiny();
        // RAM 8192 * 1.5 = 12288, 8192 used: 4096 free. vCPUs 4 * 16 = 64, 60 used.
        assert_eq!(refusal(&h, &req, &AllocationRatios::default()), None);
        let strict = AllocationRatios {
            cpu: 1.0,
            ram: 1.0,
            disk: 1.0,
        };
        assert!(refusal(&h, &req, &strict).is_some());
    }

    #[test]
    fn positive_weights_spread_and_negative_ones_pack() {
        let hosts = [
            host("a", "az", 6000, 3),
            host("b", "az", 1000, 1),
            host("c", "az", 3000, 2),
        ];
        let ratios = AllocationRatios::default();
        let spread = Policy::FilterWeigher {
            weights: Weights {
                free_ram: 1.0,
                free_vcpus: 0.0,
                instances: 0.0,
            },
        };
        assert_eq!(
            schedule(&spread, &hosts, &tiny(), &ratios, &mut first(0)).unwrap(),
            ["b", "c", "a"]
        );
        let pack = Policy::FilterWeigher {
            weights: Weights {
                free_ram: -1.0,
                free_vcpus: 0.0,
                instances: 0.0,
            },
        };
        assert_eq!(
            schedule(&pack, &hosts, &tiny(), &ratios, &mut first(0)).unwrap(),
            ["a", "c", "b"]
        );
        let fewest = Policy::FilterWeigher {
            weights: Weights {
                free_ram: 0.0,
                free_vcpus: 0.0,
                instances: -1.0,
            },
        };
        assert_eq!(
            schedule(&fewest, &hosts, &tiny(), &ratios, &mut first(0)).unwrap(),
            ["b", "c", "a"]
        );
    }

    #[test]
    fn normalisation_keeps_each_weigher_in_zero_to_one() {
        assert_eq!(normalise(&[10.0, 20.0, 15.0]), [0.0, 1.0, 0.5]);
        assert_eq!(normalise(&[7.0, 7.0]), [0.0, 0.0]);
        let hosts = [host("a", "az", 0, 0), host("b", "az", 8000, 4)];
        let refs: Vec<&Host> = hosts.iter().collect();
        let s = weigh(&refs, &Weights::default(), &AllocationRatios::default());
        assert!(s.iter().all(|v| (0.0..=2.0).contains(v)));
        assert!(s[0] > s[1]);
    }

    #[test]
    fn least_loaded_and_random_policies() {
        let hosts = [
            host("a", "az1", 0, 2),
            host("b", "az2", 0, 0),
            host("c", "az1", 0, 1),
        ];
        let ratios = AllocationRatios::default();
        assert_eq!(
            schedule(
                &Policy::LeastLoaded,
                &hosts,
                &tiny(),
                &ratios,
                &mut first(0)
            )
            .unwrap(),
            ["b", "c", "a"]
        );
        // Random draws change the order, and every host can come first.
        let mut firsts = std::collections::BTreeSet::new();
        for seed in 0..10 {
            let order =
                schedule(&Policy::Random, &hosts, &tiny(), &ratios, &mut first(seed)).unwrap();
            assert_eq!(order.len(), 3);
            firsts.insert(order[0].clone());
        }
        assert_eq!(firsts.len(), 3);
        // az_random stays in the requested zone.
        let mut req = tiny();
        req.availability_zone = Some("az1".into());
        for seed in 0..10 {
            let order =
                schedule(&Policy::AzRandom, &hosts, &req, &ratios, &mut first(seed)).unwrap();
            assert!(order.iter().all(|h| h == "a" || h == "c"), "{order:?}");
        }
    }

    #[test]
    fn no_hosts_and_a_flavor_too_big_for_any() {
        let ratios = AllocationRatios::default();
        let err = schedule(&Policy::default(), &[], &tiny(), &ratios, &mut first(0)).unwrap_err();
        assert!(err.to_string().starts_with("No valid host was found."));
        let huge = Request {
            vcpus: 1,
            ram_mb: 1 << 30,
            disk_gb: 1,
            ..Default::default()
        };
        let err = schedule(
            &Policy::default(),
            &[host("a", "az", 0, 0)],
            &huge,
            &ratios,
            &mut first(0),
        )
        .unwrap_err();
        assert!(err.to_string().contains("a: not enough RAM"), "{err}");
    }

    #[test]
    fn policies_read_from_config() {
        let p: Policy = serde_json::from_str(r#"{"policy": "least_loaded"}"#).unwrap();
        assert_eq!(p, Policy::LeastLoaded);
        let p: Policy = serde_json::from_str(
            r#"{"policy": "filter_weigher", "weights": {"free_ram": -1.0, "free_vcpus": 0.5, "instances": 0.0}}"#,
        )
        .unwrap();
        assert!(matches!(p, Policy::FilterWeigher { weights } if weights.free_ram == -1.0));
    }
}
