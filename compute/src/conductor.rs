//! The compute API's moving parts behind the HTTP surface (Nova's
//! conductor): the hosts known from heartbeats, building a server (schedule,
//! claim, launch on the agent, retry on the next host), running actions and
//! deletes on the agents, and reconciling the records with each heartbeat.

use crate::agent::{
    HeartbeatAnswer, HostAction, HostReport, LaunchRequest, Placed, AGENT_KEY_HEADER,
};
use crate::config::ApiConfig;
use crate::db::{ComputeDb, Kind};
use crate::driver::PowerState;
use crate::fixed_ips;
use crate::instance::{self, Action, Fault, Resolution, Server, TaskState, VmState};
use crate::network::Network;
use crate::rest::{call, RestError};
use crate::scheduler::{self, Host, Request};
use crate::security_groups::{self, GuardedNic, SecurityGroup};
use crate::template_cache::ImageRef;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use service_kit::auth::TempAuth;
use service_kit::client::{HttpClient, Timeouts};
use service_kit::ids::now_iso8601;
use service_kit::json_store::StoreError;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A compute host as the API remembers it (persisted, so hypervisors keep
/// their ids across restarts).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostRecord {
    pub id: u32,
    pub report: HostReport,
    pub updated: String,
}

#[derive(Default)]
pub struct ApiMetrics {
    pub launches_ok: AtomicU64,
    pub launch_attempts_failed: AtomicU64,
    pub no_valid_host: AtomicU64,
    pub heartbeats: AtomicU64,
    pub reconciled: AtomicU64,
}

pub struct Compute {
    pub config: ApiConfig,
    pub db: ComputeDb,
    pub auth: TempAuth,
    /// Last heartbeat time per host (absent: none since the API started).
    seen: Mutex<BTreeMap<String, Instant>>,
    /// Every read-modify-write of a server record holds this.
    records: Mutex<()>,
    /// Per host, the disagreements its last heartbeat showed that wait for
    /// a second one ([`instance::confirmed`]).
    pending: Mutex<BTreeMap<String, HashSet<String>>>,
    /// Scheduling and claiming a host happen one server at a time, so two
    /// builds never both take the last room on a host.
    claims: tokio::sync::Mutex<()>,
    /// Firewall pushes go one at a time, each computed when it starts, so
    /// that a host never gets an older one after a newer one.
    pushes: tokio::sync::Mutex<()>,
    /// Short calls: the registry, agents' actions and consoles.
    pub client: HttpClient,
    /// Launches: the first one of an image on a host fetches it.
    launch_client: HttpClient,
    pub metrics: ApiMetrics,
    /// The guest networks of the configuration, checked.
    pub networks: Vec<Network>,
}

#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    #[error(transparent)]
    Db(#[from] StoreError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Debug, thiserror::Error)]
enum ClaimError {
    #[error(transparent)]
    NoValidHost(#[from] scheduler::NoValidHost),
    #[error(transparent)]
    Db(#[from] StoreError),
}

fn agent_error(host: &str, e: impl std::fmt::Display) -> String {
    format!("{host}: {e}")
}

impl Compute {
    pub fn open(config: ApiConfig) -> Result<Compute, StoreError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let db = ComputeDb::open(&config.data_dir.join("compute.db"))?;
        if config.create_classic_flavors && db.all::<instance::Flavor>(Kind::Flavor)?.is_empty() {
            for f in instance::classic_flavors() {
                db.put(Kind::Flavor, &f.id, &f)?;
            }
        }
        let networks = config
            .networks
            .iter()
            .map(Network::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(std::io::Error::other)?;
        Ok(Compute {
            networks,
            auth: TempAuth::new(config.auth.clone()).map_err(std::io::Error::other)?,
            db,
            seen: Mutex::new(BTreeMap::new()),
            records: Mutex::new(()),
            pending: Mutex::new(BTreeMap::new()),
            pushes: tokio::sync::Mutex::new(()),
            claims: tokio::sync::Mutex::new(()),
            client: HttpClient::new(Timeouts {
                connect: Duration::from_secs(2),
                node: Duration::from_secs(90),
            }),
            launch_client: HttpClient::new(Timeouts {
                connect: Duration::from_secs(2),
                node: Duration::from_secs(1800),
            }),
            metrics: ApiMetrics::default(),
            config,
        })
    }

    /// Work a previous run left mid-way: a build that was never finished
    /// goes to ERROR (if its host did launch it, its heartbeat says so and
    /// the owner can delete it), and an action in flight is forgotten, as
    /// Nova's compute service does when it starts.
    pub fn recover_interrupted(&self) -> Result<(), StoreError> {
        for mut s in self.servers()? {
            let (why, deleting) = match (s.vm_state, s.task_state) {
                (_, Some(TaskState::Deleting)) => ("a delete", true),
                (VmState::Building, _) => ("the build", false),
                (_, Some(_)) => ("an action", false),
                _ => continue,
            };
            tracing::warn!(server = %s.id, "the compute API stopped during {why}");
            s.task_state = None;
            if deleting && s.host.is_none() {
                self.db.delete(Kind::Server, &s.id)?;
                fixed_ips::release(&self.db, &s.id, &s.guest.nics);
                continue;
            }
            if deleting || s.vm_state == VmState::Building {
                s.vm_state = VmState::Error;
                s.fault = Some(Fault::error(
                    format!("The compute API restarted during {why}; delete the server."),
                    String::new(),
                ));
            }
            s.updated = now_iso8601();
            self.put_server(&s)?;
        }
        Ok(())
    }

    pub fn server(&self, id: &str) -> Result<Option<Server>, StoreError> {
        self.db.get(Kind::Server, id)
    }

    pub fn servers(&self) -> Result<Vec<Server>, StoreError> {
        self.db.all(Kind::Server)
    }

    pub fn put_server(&self, s: &Server) -> Result<(), StoreError> {
        self.db.put(Kind::Server, &s.id, s)
    }

    /// Changes one server record under the records lock; the new record,
    /// or `None` if it is gone.
    pub fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut Server),
    ) -> Result<Option<Server>, StoreError> {
        let _g = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut s) = self.server(id)? else {
            return Ok(None);
        };
        f(&mut s);
        s.updated = now_iso8601();
        self.put_server(&s)?;
        Ok(Some(s))
    }

    /// Starts an action (its task set, or a conflict), under the records lock.
    pub fn begin(&self, id: &str, action: Action) -> Result<Server, ComputeError> {
        let _g = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let mut s = self
            .server(id)?
            .filter(|s| s.vm_state != VmState::Deleted)
            .ok_or_else(|| ComputeError::NotFound(format!("Instance {id} could not be found.")))?;
        let task = instance::begin(&s, action).map_err(ComputeError::Conflict)?;
        s.task_state = Some(task);
        s.updated = now_iso8601();
        self.put_server(&s)?;
        Ok(s)
    }

    pub fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        self.db.all(Kind::Host)
    }

    /// A heartbeat is recent.
    pub fn is_up(&self, host: &str) -> bool {
        let limit = Duration::from_secs(self.config.host_down_after_secs);
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .is_some_and(|t| t.elapsed() <= limit)
    }

    /// What the scheduler sees: each host's capacity from its heartbeat,
    /// and its use from the API's own records (which include claims made
    /// since the heartbeat).
    fn scheduler_hosts(&self, servers: &[Server]) -> Result<Vec<Host>, StoreError> {
        Ok(self
            .hosts()?
            .into_iter()
            .map(|h| {
                let r = &h.report;
                let mine: Vec<&Server> = servers
                    .iter()
                    .filter(|s| s.holds_resources() && s.host.as_deref() == Some(&r.name))
                    .collect();
                let mut groups: Vec<String> = mine.iter().filter_map(|s| s.group.clone()).collect();
                groups.sort();
                groups.dedup();
                Host {
                    name: r.name.clone(),
                    availability_zone: r.availability_zone.clone(),
                    up: self.is_up(&r.name),
                    vcpus: r.vcpus,
                    vcpus_used: mine.iter().map(|s| s.flavor.vcpus).sum(),
                    ram_mb: r.ram_mb,
                    ram_used_mb: mine.iter().map(|s| s.flavor.ram).sum(),
                    disk_gb: r.disk_gb,
                    disk_used_gb: mine.iter().map(|s| s.flavor.disk).sum(),
                    instances: mine.len() as u32,
                    architecture: r.architecture.clone(),
                    server_groups: groups,
                }
            })
            .collect())
    }

    /// Picks the best host not yet tried and claims it for the server (its
    /// record names the host from here on).
    async fn claim(
        &self,
        server: &Server,
        image_properties: &BTreeMap<String, String>,
        tried: &HashSet<String>,
    ) -> Result<Option<HostRecord>, ClaimError> {
        let _one = self.claims.lock().await;
        let servers = self.servers()?;
        let hosts: Vec<Host> = self
            .scheduler_hosts(&servers)?
            .into_iter()
            .filter(|h| !tried.contains(&h.name))
            .collect();
        if hosts.is_empty() && !tried.is_empty() {
            return Ok(None);
        }
        let req = Request {
            vcpus: server.flavor.vcpus,
            ram_mb: server.flavor.ram,
            disk_gb: server.flavor.disk,
            availability_zone: server.requested_zone.clone(),
            image_properties: image_properties.clone(),
            anti_affinity_group: server.group.clone(),
        };
        let mut random = |n: usize| {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).expect("the OS random source works");
            (u64::from_le_bytes(b) % n.max(1) as u64) as usize
        };
        let order = scheduler::schedule(
            &self.config.scheduler,
            &hosts,
            &req,
            &self.config.allocation_ratios,
            &mut random,
        )?;
        let name = order
            .into_iter()
            .next()
            .expect("schedule returns a host or an error");
        let record: Option<HostRecord> = self.db.get(Kind::Host, &name)?;
        let Some(record) = record else {
            return Ok(None);
        };
        let az = record.report.availability_zone.clone();
        self.update(&server.id, |s| {
            s.host = Some(name.clone());
            s.availability_zone = Some(az);
            if s.task_state != Some(TaskState::Deleting) {
                s.task_state = Some(TaskState::Spawning);
            }
        })?;
        Ok(Some(record))
    }

    /// Builds a server: up to `max_attempts` hosts, each tried once; ERROR
    /// with every host's reason when none could launch it.
    pub async fn build(
        self: Arc<Self>,
        id: String,
        image: ImageRef,
        image_properties: BTreeMap<String, String>,
        token: String,
    ) {
        let mut tried = HashSet::new();
        let mut reasons: Vec<String> = Vec::new();
        let mut fault_message = None;
        for _ in 0..self.config.max_attempts {
            let Ok(Some(server)) = self.server(&id) else {
                return;
            };
            if server.task_state == Some(TaskState::Deleting) {
                break;
            }
            let host = match self.claim(&server, &image_properties, &tried).await {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(ClaimError::NoValidHost(nvh)) => {
                    self.metrics.no_valid_host.fetch_add(1, Ordering::Relaxed);
                    fault_message = Some(nvh.to_string());
                    break;
                }
                Err(ClaimError::Db(e)) => {
                    tracing::error!(server = %id, error = %e, "database error while scheduling");
                    fault_message = Some(format!("database error: {e}"));
                    break;
                }
            };
            let name = host.report.name.clone();
            tried.insert(name.clone());
            let req = LaunchRequest {
                instance: Placed {
                    id: server.id.clone(),
                    name: server.name.clone(),
                    account: server.account.clone(),
                    user: server.user.clone(),
                    image: image.clone(),
                    flavor: server.flavor.clone(),
                    group: server.group.clone(),
                    created: server.created.clone(),
                    metadata: server.metadata.clone(),
                    guest: server.guest.clone(),
                },
                registry_url: self.config.registry_url.clone(),
                token: token.clone(),
                // Claimed, the server is among the host's already.
                firewall: self.firewall_of(&name).ok(),
            };
            let result = call(
                &self.launch_client,
                &host.report.url,
                Method::POST,
                "/instances",
                &[(AGENT_KEY_HEADER, &self.config.agent_key)],
                Some(&serde_json::to_value(&req).expect("json")),
            )
            .await;
            match result {
                Ok((status, _)) if status.is_success() => {
                    self.metrics.launches_ok.fetch_add(1, Ordering::Relaxed);
                    // Hosts whose guests let this one's groups in.
                    self.push_firewalls();
                    let after = self.update(&id, |s| {
                        s.vm_state = VmState::Active;
                        s.power_state = Some(PowerState::Running);
                        s.launched_at = Some(now_iso8601());
                        if s.task_state != Some(TaskState::Deleting) {
                            s.task_state = None;
                        }
                    });
                    // Deleted while it was being built: delete it now.
                    if let Ok(Some(s)) = after {
                        if s.task_state == Some(TaskState::Deleting) {
                            self.clone().delete(id).await;
                        }
                    }
                    return;
                }
                Ok((status, body)) => {
                    let why = body["error"]
                        .as_str()
                        .map_or_else(|| status.to_string(), str::to_string);
                    reasons.push(agent_error(&name, why));
                }
                Err(e) => reasons.push(agent_error(&name, e)),
            }
            self.metrics
                .launch_attempts_failed
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(server = %id, host = %name, reason = %reasons.last().expect("pushed"), "launch failed; trying the next host");
            // The claim goes with the failed attempt.
            let _ = self.update(&id, |s| {
                s.host = None;
                s.availability_zone = None;
                if s.task_state != Some(TaskState::Deleting) {
                    s.task_state = Some(TaskState::Scheduling);
                }
            });
        }
        let message = match (fault_message, reasons.is_empty()) {
            (Some(m), true) => m,
            (Some(m), false) => format!("{m} Earlier attempts: {}", reasons.join("; ")),
            (None, _) => format!(
                "Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures. {}",
                reasons.join("; ")
            ),
        };
        tracing::warn!(server = %id, %message, "build failed");
        let _g = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(Some(mut s)) = self.server(&id) else {
            return;
        };
        if s.task_state == Some(TaskState::Deleting) {
            let _ = self.db.delete(Kind::Server, &id);
            fixed_ips::release(&self.db, &s.id, &s.guest.nics);
            return;
        }
        s.vm_state = VmState::Error;
        s.task_state = None;
        s.host = None;
        s.fault = Some(Fault::error(message, reasons.join("\n")));
        s.updated = now_iso8601();
        let _ = self.put_server(&s);
    }

    /// What the guest interfaces on `host` let in: its servers' security
    /// groups, with source groups resolved across all hosts.
    pub fn firewall_of(&self, host: &str) -> Result<Vec<GuardedNic>, StoreError> {
        let groups: Vec<SecurityGroup> = self.db.all(Kind::SecurityGroup)?;
        Ok(security_groups::ingress_of(host, &self.servers()?, &groups))
    }

    /// Tells every host that is up what its guests let in now, rather than
    /// at its next heartbeat: after a change of rules or of a group's
    /// members (a server joins or leaves a group, is launched or deleted;
    /// a deleted server's address may be handed out at once). A host that
    /// misses it learns it from its next heartbeat.
    pub fn push_firewalls(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            let _one = this.pushes.lock().await;
            let read = || -> Result<_, StoreError> {
                let groups: Vec<SecurityGroup> = this.db.all(Kind::SecurityGroup)?;
                Ok((this.hosts()?, this.servers()?, groups))
            };
            let Ok((hosts, servers, groups)) = read() else {
                return;
            };
            for h in hosts.iter().filter(|h| this.is_up(&h.report.name)) {
                let name = &h.report.name;
                let answer = HeartbeatAnswer {
                    firewall: Some(security_groups::ingress_of(name, &servers, &groups)),
                };
                let body = serde_json::to_value(answer).expect("json");
                if let Err(e) = this
                    .agent_call(name, Method::PUT, "/firewall", Some(&body))
                    .await
                {
                    tracing::warn!(host = %name, error = %e, "security groups not pushed; the next heartbeat brings them");
                }
            }
        });
    }

    /// The agent of `host` (`http://host:port`), as its heartbeats give it.
    pub fn host_url(&self, host: &str) -> Result<String, ComputeError> {
        let record: Option<HostRecord> = self.db.get(Kind::Host, host)?;
        record
            .map(|h| h.report.url)
            .ok_or_else(|| ComputeError::Unavailable(format!("host {host} is unknown")))
    }

    /// A JSON call to the agent of `host`.
    pub async fn agent_call(
        &self,
        host: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ComputeError> {
        let url = self.host_url(host)?;
        let (status, v) = call(
            &self.client,
            &url,
            method,
            path,
            &[(AGENT_KEY_HEADER, &self.config.agent_key)],
            body,
        )
        .await
        .map_err(|e: RestError| ComputeError::Unavailable(agent_error(host, e)))?;
        match status {
            s if s.is_success() => Ok(v),
            StatusCode::NOT_FOUND => Err(ComputeError::NotFound(agent_error(host, &v["error"]))),
            _ => Err(ComputeError::Unavailable(agent_error(host, &v["error"]))),
        }
    }

    /// Runs a started action (reboot, stop, start) on the server's host and
    /// settles its record.
    pub async fn run_action(self: Arc<Self>, id: String, action: Action) {
        let Ok(Some(server)) = self.server(&id) else {
            return;
        };
        let Some(host) = server.host.clone() else {
            return;
        };
        let host_action = match action {
            Action::Stop => HostAction::Stop,
            Action::Start => HostAction::Start,
            Action::Reboot { hard } => HostAction::Reboot { hard },
            Action::Delete => return self.delete(id).await,
        };
        let result = self
            .agent_call(
                &host,
                Method::POST,
                &format!("/instances/{id}/action"),
                Some(&serde_json::to_value(host_action).expect("json")),
            )
            .await;
        let _ = self.update(&id, |s| {
            s.task_state = None;
            match &result {
                Ok(_) => {
                    s.vm_state = instance::finished(action);
                    s.power_state = Some(if s.vm_state == VmState::Stopped {
                        PowerState::Shutoff
                    } else {
                        PowerState::Running
                    });
                }
                Err(e) => {
                    tracing::warn!(server = %id, action = action.name(), error = %e, "action failed");
                    s.fault = Some(Fault::error(format!("{} failed: {e}", action.name()), String::new()));
                }
            }
        });
    }

    /// Deletes a server (its task already `deleting`): destroyed on its
    /// host, then the record goes. A host that cannot be reached leaves a
    /// tombstone, reaped when the host reports the instance again.
    pub async fn delete(self: Arc<Self>, id: String) {
        let Ok(Some(server)) = self.server(&id) else {
            return;
        };
        let result = match &server.host {
            None => Ok(Value::Null),
            Some(host) => {
                self.agent_call(host, Method::DELETE, &format!("/instances/{id}"), None)
                    .await
            }
        };
        // After the records below: a freed address must stop counting as a
        // member's on every host.
        let _push = PushOnDrop(&self);
        let _g = self.records.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(_) | Err(ComputeError::NotFound(_)) if server.host.is_none() => {
                fixed_ips::release(&self.db, &server.id, &server.guest.nics);
                let _ = self.db.delete(Kind::Server, &id);
            }
            // A tombstone until the host's heartbeats stop showing it, so a
            // heartbeat taken before the delete cannot bring it back.
            Ok(_) | Err(ComputeError::NotFound(_)) => {
                // The guest is gone from its host: its addresses are free
                // before anyone can see the server gone.
                fixed_ips::release(&self.db, &server.id, &server.guest.nics);
                if let Ok(Some(mut s)) = self.server(&id) {
                    s.vm_state = VmState::Deleted;
                    s.task_state = None;
                    s.power_state = None;
                    s.updated = now_iso8601();
                    let _ = self.put_server(&s);
                }
            }
            Err(e) => {
                let host = server.host.clone().unwrap_or_default();
                let Ok(Some(mut s)) = self.server(&id) else {
                    return;
                };
                s.task_state = None;
                s.updated = now_iso8601();
                if self.is_up(&host) {
                    tracing::warn!(server = %id, error = %e, "delete failed on its host");
                    s.vm_state = VmState::Error;
                    s.fault = Some(Fault::error(format!("delete failed: {e}"), String::new()));
                } else {
                    tracing::warn!(server = %id, %host, "host is down: deleted here, to be reaped when it reports");
                    s.vm_state = VmState::Deleted;
                    fixed_ips::release(&self.db, &server.id, &server.guest.nics);
                }
                let _ = self.put_server(&s);
            }
        }
    }

    /// Records a heartbeat and reconciles the host's instances with the
    /// records; each disagreement is resolved and logged. The answer says
    /// what the host's guests let in, from the same read of the servers.
    pub fn heartbeat(self: &Arc<Self>, report: HostReport) -> Result<HeartbeatAnswer, StoreError> {
        self.metrics.heartbeats.fetch_add(1, Ordering::Relaxed);
        let name = report.name.clone();
        {
            let _g = self.records.lock().unwrap_or_else(|p| p.into_inner());
            let existing: Option<HostRecord> = self.db.get(Kind::Host, &name)?;
            let id = match existing {
                Some(h) => h.id,
                None => {
                    let next = self.hosts()?.iter().map(|h| h.id).max().unwrap_or(0) + 1;
                    tracing::info!(host = %name, zone = %report.availability_zone, "a compute host registered");
                    next
                }
            };
            self.db.put(
                Kind::Host,
                &name,
                &HostRecord {
                    id,
                    report: report.clone(),
                    updated: now_iso8601(),
                },
            )?;
        }
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), Instant::now());
        let (resolutions, servers) = {
            let _g = self.records.lock().unwrap_or_else(|p| p.into_inner());
            let reported: HashSet<&str> = report.instances.iter().map(|i| i.id.as_str()).collect();
            let servers = self.servers()?;
            let records: Vec<Server> = servers
                .iter()
                .filter(|s| s.host.as_deref() == Some(&name) || reported.contains(s.id.as_str()))
                .cloned()
                .collect();
            let found = instance::reconcile(&name, &records, &report.instances);
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let seen_before = pending.remove(&name).unwrap_or_default();
            let (resolutions, next) = instance::confirmed(found, &seen_before);
            pending.insert(name.clone(), next);
            drop(pending);
            for r in &resolutions {
                self.apply_locked(&name, r, &records)?;
            }
            (resolutions, servers)
        };
        let groups: Vec<SecurityGroup> = self.db.all(Kind::SecurityGroup)?;
        let answer = HeartbeatAnswer {
            firewall: Some(security_groups::ingress_of(&name, &servers, &groups)),
        };
        for r in resolutions {
            self.metrics.reconciled.fetch_add(1, Ordering::Relaxed);
            if let Resolution::Reap(id) | Resolution::Stray(id) = r {
                let this = self.clone();
                let host = name.clone();
                tokio::spawn(async move {
                    match this
                        .agent_call(&host, Method::DELETE, &format!("/instances/{id}"), None)
                        .await
                    {
                        Ok(_) | Err(ComputeError::NotFound(_)) => {}
                        Err(e) => {
                            tracing::warn!(server = %id, %host, error = %e, "could not destroy it")
                        }
                    }
                });
            }
        }
        Ok(answer)
    }

    /// The record side of one resolution (the records lock is held).
    fn apply_locked(
        &self,
        host: &str,
        r: &Resolution,
        records: &[Server],
    ) -> Result<(), StoreError> {
        let find = |id: &str| records.iter().find(|s| s.id == id).cloned();
        match r {
            Resolution::Adopt(rep) => {
                tracing::warn!(server = %rep.id, %host, "the host runs an instance the API had no record of: adopted");
                let running = rep.power_state == PowerState::Running;
                let az: Option<HostRecord> = self.db.get(Kind::Host, host)?;
                self.put_server(&Server {
                    id: rep.id.clone(),
                    name: rep.name.clone(),
                    account: rep.account.clone(),
                    user: rep.user.clone(),
                    image_id: rep.image_id.clone(),
                    flavor: rep.flavor.clone(),
                    requested_zone: None,
                    group: rep.group.clone(),
                    host: Some(host.to_string()),
                    availability_zone: az.map(|h| h.report.availability_zone),
                    vm_state: if running {
                        VmState::Active
                    } else {
                        VmState::Stopped
                    },
                    task_state: None,
                    power_state: Some(rep.power_state),
                    fault: None,
                    metadata: BTreeMap::new(),
                    created: rep.created.clone(),
                    updated: now_iso8601(),
                    launched_at: Some(rep.created.clone()),
                    // The host's report carries no key or user data.
                    guest: Default::default(),
                    security_groups: Vec::new(),
                })?;
            }
            Resolution::Reap(id) => {
                // Usually a heartbeat taken just before the delete; after a
                // delete while the host was down, the real thing. The
                // tombstone stays until a heartbeat no longer shows it.
                tracing::info!(server = %id, %host, "the host shows a deleted instance: destroying it");
            }
            Resolution::Stray(id) => {
                tracing::warn!(server = %id, %host, "the host has an instance placed elsewhere: destroying its copy");
            }
            Resolution::Vanished(id) => {
                tracing::warn!(server = %id, %host, "the instance is gone from its host: ERROR");
                if let Some(mut s) = find(id) {
                    s.vm_state = VmState::Error;
                    s.power_state = None;
                    s.fault = Some(Fault::error(
                        format!("The instance is no longer on its host {host}."),
                        String::new(),
                    ));
                    s.updated = now_iso8601();
                    self.put_server(&s)?;
                }
            }
            Resolution::Power(id, vm, power) => {
                if let Some(mut s) = find(id) {
                    if s.vm_state != *vm {
                        tracing::info!(server = %id, %host, from = s.vm_state.name(), to = vm.name(), "the guest changed power state by itself");
                    }
                    s.vm_state = *vm;
                    s.power_state = Some(*power);
                    s.updated = now_iso8601();
                    self.put_server(&s)?;
                }
            }
            Resolution::Forget(id) => {
                tracing::info!(server = %id, %host, "the host no longer has a deleted instance: tombstone removed");
                self.db.delete(Kind::Server, id)?;
            }
        }
        Ok(())
    }
}

/// Pushes the firewalls when dropped: on every way out of a function.
struct PushOnDrop<'a>(&'a Arc<Compute>);

impl Drop for PushOnDrop<'_> {
    fn drop(&mut self) {
        self.0.push_firewalls();
    }
}
