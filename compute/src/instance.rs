//! Nova's instance model as pure data and rules: flavors, the vm_state and
//! task_state pair behind every status the API shows, which action is
//! allowed when, and how the API's records are reconciled with what a host
//! reports. The API server and the agent are thin shells around this.

use crate::driver::PowerState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flavor {
    pub id: String,
    pub name: String,
    pub vcpus: u32,
    /// MiB.
    pub ram: u64,
    /// GiB.
    pub disk: u64,
}

/// The flavors every Nova deployment used to ship, created by `nubo up`.
pub fn classic_flavors() -> Vec<Flavor> {
    let f = |id: &str, name: &str, vcpus, ram, disk| Flavor {
        id: id.into(),
        name: name.into(),
        vcpus,
        ram,
        disk,
    };
    vec![
        f("1", "m1.tiny", 1, 512, 1),
        f("2", "m1.small", 1, 2048, 20),
        f("3", "m1.medium", 2, 4096, 40),
    ]
}

/// Nova's `vm_state`: where the instance is at rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    Building,
    Active,
    Stopped,
    Error,
    /// Deleted: kept as a tombstone (hidden from the API) until its host's
    /// heartbeat no longer shows the instance. A delete while the host is
    /// unreachable ends here too, and the host destroys the instance when
    /// it reports it again.
    Deleted,
}

/// Nova's `task_state`: what is being done to it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Scheduling,
    Spawning,
    Rebooting,
    RebootingHard,
    PoweringOff,
    PoweringOn,
    Deleting,
}

impl TaskState {
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Scheduling => "scheduling",
            TaskState::Spawning => "spawning",
            TaskState::Rebooting => "rebooting",
            TaskState::RebootingHard => "rebooting_hard",
            TaskState::PoweringOff => "powering-off",
            TaskState::PoweringOn => "powering-on",
            TaskState::Deleting => "deleting",
        }
    }
}

impl VmState {
    pub fn name(self) -> &'static str {
        match self {
            VmState::Building => "building",
            VmState::Active => "active",
            VmState::Stopped => "stopped",
            VmState::Error => "error",
            VmState::Deleted => "deleted",
        }
    }
}

/// The status the API shows, as Nova derives it from the two states.
pub fn status(vm: VmState, task: Option<TaskState>) -> &'static str {
    match (vm, task) {
        (VmState::Building, _) => "BUILD",
        (VmState::Active, Some(TaskState::Rebooting)) => "REBOOT",
        (VmState::Active, Some(TaskState::RebootingHard)) => "HARD_REBOOT",
        (VmState::Active, _) => "ACTIVE",
        (VmState::Stopped, _) => "SHUTOFF",
        (VmState::Error, _) => "ERROR",
        (VmState::Deleted, _) => "DELETED",
    }
}

/// Nova's numeric `OS-EXT-STS:power_state`.
pub fn power_state_code(p: Option<PowerState>) -> u8 {
    match p {
        None => 0,
        Some(PowerState::Running) => 1,
        Some(PowerState::Paused) => 3,
        Some(PowerState::Shutoff) => 4,
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub code: u16,
    pub message: String,
    pub details: String,
    pub created: String,
}

impl Fault {
    /// A server error (500) recorded now.
    pub fn error(message: impl Into<String>, details: impl Into<String>) -> Fault {
        Fault {
            code: 500,
            message: message.into(),
            details: details.into(),
            created: service_kit::ids::now_iso8601(),
        }
    }
}

/// One server, as the API stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Server {
    pub id: String,
    pub name: String,
    /// The Swift account of its owner: Nova's project.
    pub account: String,
    pub user: String,
    pub image_id: String,
    /// A copy, as Nova keeps one: the flavor may change or go later.
    pub flavor: Flavor,
    /// The zone asked for, if any.
    pub requested_zone: Option<String>,
    /// The anti-affinity group from the `group` scheduler hint.
    pub group: Option<String>,
    pub host: Option<String>,
    pub availability_zone: Option<String>,
    pub vm_state: VmState,
    pub task_state: Option<TaskState>,
    pub power_state: Option<PowerState>,
    pub fault: Option<Fault>,
    pub metadata: BTreeMap<String, String>,
    pub created: String,
    pub updated: String,
    pub launched_at: Option<String>,
    /// What the guest receives through its metadata.
    #[serde(default)]
    pub guest: GuestData,
    /// Its security groups, by name (unique in a project and never
    /// renamed; [`crate::security_groups`]).
    #[serde(default)]
    pub security_groups: Vec<String>,
}

/// What an instance is given at launch for its guest to read (cloud-init's
/// metadata): its key and user data, kept as they were at launch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestData {
    /// The key pair named at launch, and its public key then.
    pub key_name: Option<String>,
    pub public_key: Option<String>,
    /// `user_data` as the client sent it (base64).
    pub user_data: Option<String>,
    /// Whether the guest gets a config drive ([`crate::config_drive`]).
    #[serde(default)]
    pub config_drive: bool,
    /// Its interfaces, with the addresses the API gave them.
    #[serde(default)]
    pub nics: Vec<crate::network::Nic>,
}

/// The most `user_data` Nova takes, base64-encoded.
pub const MAX_USER_DATA: usize = 65535;

/// `user_data` decoded, checked as Nova checks it: base64 (line breaks
/// allowed, as `base64` writes them), at most [`MAX_USER_DATA`]
/// characters so encoded.
pub fn decode_user_data(encoded: &str) -> Result<Vec<u8>, &'static str> {
    use base64::Engine;
    if encoded.len() > MAX_USER_DATA {
        return Err("Invalid input for field/attribute user_data. Value is too long.");
    }
    let compact: Vec<u8> = encoded
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| "User data needs to be valid base 64.")
}

impl Server {
    pub fn status(&self) -> &'static str {
        status(self.vm_state, self.task_state)
    }

    /// Counts against its host's capacity.
    pub fn holds_resources(&self) -> bool {
        self.host.is_some() && self.vm_state != VmState::Deleted
    }
}

/// The actions of `POST /servers/{id}/action` that change state, and delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Reboot { hard: bool },
    Stop,
    Start,
    Delete,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Reboot { .. } => "reboot",
            Action::Stop => "os-stop",
            Action::Start => "os-start",
            Action::Delete => "delete",
        }
    }
}

/// The task an action starts, or why it cannot start now (Nova's 409
/// "Cannot 'X' instance Y while it is in vm_state Z").
pub fn begin(server: &Server, action: Action) -> Result<TaskState, String> {
    let conflict = || {
        let task = server
            .task_state
            .map(|t| format!(", task_state {}", t.name()))
            .unwrap_or_default();
        format!(
            "Cannot '{}' instance {} while it is in vm_state {}{task}",
            action.name(),
            server.id,
            server.vm_state.name()
        )
    };
    let idle = server.task_state.is_none();
    match action {
        Action::Delete if server.task_state != Some(TaskState::Deleting) => Ok(TaskState::Deleting),
        Action::Reboot { hard: false } if idle && server.vm_state == VmState::Active => {
            Ok(TaskState::Rebooting)
        }
        // Nova lets a hard reboot rescue a stopped or broken instance, as
        // long as it was placed on a host.
        Action::Reboot { hard: true }
            if idle
                && server.host.is_some()
                && matches!(
                    server.vm_state,
                    VmState::Active | VmState::Stopped | VmState::Error
                ) =>
        {
            Ok(TaskState::RebootingHard)
        }
        Action::Stop if idle && server.vm_state == VmState::Active => Ok(TaskState::PoweringOff),
        Action::Start if idle && server.vm_state == VmState::Stopped => Ok(TaskState::PoweringOn),
        _ => Err(conflict()),
    }
}

/// The vm_state once an action's task has succeeded.
pub fn finished(action: Action) -> VmState {
    match action {
        Action::Reboot { .. } | Action::Start => VmState::Active,
        Action::Stop => VmState::Stopped,
        Action::Delete => VmState::Deleted,
    }
}

/// What a host says of one instance it has (its heartbeat carries one per
/// instance), enough to adopt it if the API has lost its record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceReport {
    pub id: String,
    pub name: String,
    pub account: String,
    pub user: String,
    pub image_id: String,
    pub flavor: Flavor,
    pub group: Option<String>,
    pub power_state: PowerState,
    pub created: String,
}

/// How one disagreement between the API and a host is resolved.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    /// The host runs an instance the API has no record of (its database
    /// was lost or restored from an older copy): the record is rebuilt
    /// from the host's report.
    Adopt(Box<InstanceReport>),
    /// The host runs an instance deleted while the host was unreachable:
    /// the host destroys it and the tombstone goes.
    Reap(String),
    /// The host still has an instance the API placed on another host (a
    /// launch that failed after the hypervisor started it): destroyed.
    Stray(String),
    /// The API's record says the instance is on this host, but the host
    /// does not have it: ERROR with a fault.
    Vanished(String),
    /// The guest powered itself off (or on): the record follows.
    Power(String, VmState, PowerState),
    /// A tombstone whose host no longer has the instance: it goes.
    Forget(String),
}

/// Compares the records of one host's instances (every record naming the
/// host, and every record of an id the host reports) with the host's
/// report. Records with a task in flight are left alone: their task will
/// settle them.
pub fn reconcile(host: &str, records: &[Server], report: &[InstanceReport]) -> Vec<Resolution> {
    let mut out = Vec::new();
    for r in report {
        match records.iter().find(|s| s.id == r.id) {
            None => out.push(Resolution::Adopt(Box::new(r.clone()))),
            Some(s) if s.vm_state == VmState::Deleted => out.push(Resolution::Reap(r.id.clone())),
            Some(s) if s.task_state.is_some() => {}
            Some(s) if s.host.as_deref() != Some(host) => out.push(Resolution::Stray(r.id.clone())),
            Some(s) => {
                let follows = match (s.vm_state, r.power_state) {
                    (VmState::Active, PowerState::Shutoff) => Some(VmState::Stopped),
                    (VmState::Stopped, PowerState::Running) => Some(VmState::Active),
                    _ => None,
                };
                if let Some(vm) = follows {
                    out.push(Resolution::Power(s.id.clone(), vm, r.power_state));
                } else if s.power_state != Some(r.power_state) && s.vm_state != VmState::Error {
                    out.push(Resolution::Power(s.id.clone(), s.vm_state, r.power_state));
                }
            }
        }
    }
    for s in records {
        let reported = report.iter().any(|r| r.id == s.id);
        if s.vm_state == VmState::Deleted && s.host.as_deref() == Some(host) && !reported {
            out.push(Resolution::Forget(s.id.clone()));
            continue;
        }
        let placed_here = s.host.as_deref() == Some(host)
            && s.task_state.is_none()
            && matches!(s.vm_state, VmState::Active | VmState::Stopped);
        if placed_here && !reported {
            out.push(Resolution::Vanished(s.id.clone()));
        }
    }
    out
}

impl Resolution {
    /// What it is about, as a key: the kind and the server.
    pub fn key(&self) -> String {
        let (kind, id) = match self {
            Resolution::Adopt(r) => ("adopt", r.id.as_str()),
            Resolution::Reap(id) => ("reap", id.as_str()),
            Resolution::Stray(id) => ("stray", id.as_str()),
            Resolution::Vanished(id) => ("vanished", id.as_str()),
            Resolution::Power(id, ..) => ("power", id.as_str()),
            Resolution::Forget(id) => ("forget", id.as_str()),
        };
        format!("{kind}:{id}")
    }

    /// Acting on it would change or create a record the owner sees, so
    /// it must be seen twice first.
    fn needs_confirmation(&self) -> bool {
        matches!(
            self,
            Resolution::Adopt(_) | Resolution::Vanished(_) | Resolution::Power(..)
        )
    }
}

/// Which resolutions to act on now. A heartbeat is a snapshot taken a
/// moment before the API reads it: a launch, an action or a delete may
/// finish in between, and the snapshot then disagrees with a record that
/// is already right. So a disagreement that changes what the owner sees
/// is acted on only when two heartbeats in a row show it (`pending` holds
/// the keys the previous one found); destroying what should not exist is
/// safe to do at once. Returns the resolutions to apply and the keys to
/// remember for the next heartbeat.
pub fn confirmed(
    found: Vec<Resolution>,
    pending: &std::collections::HashSet<String>,
) -> (Vec<Resolution>, std::collections::HashSet<String>) {
    let mut now = Vec::new();
    let mut next = std::collections::HashSet::new();
    for r in found {
        if !r.needs_confirmation() || pending.contains(&r.key()) {
            now.push(r);
        } else {
            next.insert(r.key());
        }
    }
    (now, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_is_base64_within_nova_s_limit() {
        assert_eq!(decode_user_data("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_user_data("aGVs\nbG8=\n").unwrap(), b"hello");
        assert_eq!(decode_user_data("").unwrap(), b"");
        assert!(decode_user_data("not base64!").is_err());
        assert!(decode_user_data("aGVsbG8").is_err(), "unpadded");
        let fits = "QUFB".repeat(MAX_USER_DATA / 4);
        assert!(decode_user_data(&fits).is_ok());
        let over = "QUFB".repeat(MAX_USER_DATA / 4 + 1);
        assert!(decode_user_data(&over).unwrap_err().contains("too long"));
    }

    fn server(id: &str, vm: VmState, task: Option<TaskState>, host: Option<&str>) -> Server {
        Server {
            id: id.into(),
            name: format!("vm-{id}"),
            account: "AUTH_test".into(),
            user: "tester".into(),
            image_id: "img".into(),
            flavor: classic_flavors()[0].clone(),
            requested_zone: None,
            group: None,
            host: host.map(str::to_string),
            availability_zone: Some("nova".into()),
            vm_state: vm,
            task_state: task,
            power_state: match vm {
                VmState::Active => Some(PowerState::Running),
                VmState::Stopped => Some(PowerState::Shutoff),
                _ => None,
            },
            fault: None,
            metadata: BTreeMap::new(),
            created: "2026-01-01T00:00:00Z".into(),
            updated: "2026-01-01T00:00:00Z".into(),
            launched_at: None,
            guest: GuestData::default(),
            security_groups: Vec::new(),
        }
    }

    fn report(id: &str, power: PowerState) -> InstanceReport {
        InstanceReport {
            id: id.into(),
            name: format!("vm-{id}"),
            account: "AUTH_test".into(),
            user: "tester".into(),
            image_id: "img".into(),
            flavor: classic_flavors()[0].clone(),
            group: None,
            power_state: power,
            created: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn statuses_follow_nova() {
        use TaskState::*;
        use VmState::*;
        assert_eq!(status(Building, Some(Scheduling)), "BUILD");
        assert_eq!(status(Building, Some(Spawning)), "BUILD");
        assert_eq!(status(Active, None), "ACTIVE");
        assert_eq!(status(Active, Some(Rebooting)), "REBOOT");
        assert_eq!(status(Active, Some(RebootingHard)), "HARD_REBOOT");
        assert_eq!(status(Active, Some(PoweringOff)), "ACTIVE");
        assert_eq!(status(Stopped, None), "SHUTOFF");
        assert_eq!(status(Stopped, Some(PoweringOn)), "SHUTOFF");
        assert_eq!(status(Error, None), "ERROR");
        assert_eq!(status(Deleted, None), "DELETED");
    }

    #[test]
    fn actions_are_allowed_only_from_their_states() {
        let active = server("a", VmState::Active, None, Some("h1"));
        let stopped = server("s", VmState::Stopped, None, Some("h1"));
        let building = server(
            "b",
            VmState::Building,
            Some(TaskState::Spawning),
            Some("h1"),
        );
        let errored = server("e", VmState::Error, None, None);
        assert_eq!(begin(&active, Action::Stop), Ok(TaskState::PoweringOff));
        assert_eq!(begin(&stopped, Action::Start), Ok(TaskState::PoweringOn));
        assert_eq!(
            begin(&active, Action::Reboot { hard: false }),
            Ok(TaskState::Rebooting)
        );
        assert_eq!(
            begin(&stopped, Action::Reboot { hard: true }),
            Ok(TaskState::RebootingHard)
        );
        let e = begin(&active, Action::Start).unwrap_err();
        assert_eq!(
            e,
            "Cannot 'os-start' instance a while it is in vm_state active"
        );
        assert!(begin(&stopped, Action::Stop).is_err());
        assert!(begin(&stopped, Action::Reboot { hard: false }).is_err());
        assert!(begin(&building, Action::Stop)
            .unwrap_err()
            .ends_with("task_state spawning"));
        // A server that never reached a host has nothing to reboot.
        assert!(begin(&errored, Action::Reboot { hard: true }).is_err());
        // Delete works from anywhere, once.
        for s in [&active, &stopped, &building, &errored] {
            assert_eq!(begin(s, Action::Delete), Ok(TaskState::Deleting));
        }
        let deleting = server("d", VmState::Active, Some(TaskState::Deleting), Some("h1"));
        assert!(begin(&deleting, Action::Delete).is_err());
    }

    #[test]
    fn reconcile_adopts_reaps_and_flags_every_disagreement() {
        let records = vec![
            server("ok", VmState::Active, None, Some("h1")),
            server("gone", VmState::Active, None, Some("h1")),
            server("tomb", VmState::Deleted, None, Some("h1")),
            server("moved", VmState::Active, None, Some("h2")),
            server("off", VmState::Active, None, Some("h1")),
            server(
                "busy",
                VmState::Building,
                Some(TaskState::Spawning),
                Some("h1"),
            ),
            server(
                "busy2",
                VmState::Active,
                Some(TaskState::Deleting),
                Some("h1"),
            ),
            server("tomb2", VmState::Deleted, None, Some("h1")),
        ];
        let rep = vec![
            report("ok", PowerState::Running),
            report("lost", PowerState::Running),
            report("tomb", PowerState::Running),
            report("moved", PowerState::Running),
            report("off", PowerState::Shutoff),
            report("busy", PowerState::Running),
        ];
        let got = reconcile("h1", &records, &rep);
        assert_eq!(
            got,
            vec![
                Resolution::Adopt(Box::new(report("lost", PowerState::Running))),
                Resolution::Reap("tomb".into()),
                Resolution::Stray("moved".into()),
                Resolution::Power("off".into(), VmState::Stopped, PowerState::Shutoff),
                Resolution::Vanished("gone".into()),
                Resolution::Forget("tomb2".into()),
            ]
        );
    }

    #[test]
    fn owner_visible_changes_wait_for_a_second_heartbeat() {
        let found = || {
            vec![
                Resolution::Vanished("v".into()),
                Resolution::Power("p".into(), VmState::Stopped, PowerState::Shutoff),
                Resolution::Adopt(Box::new(report("a", PowerState::Running))),
                Resolution::Reap("r".into()),
                Resolution::Forget("f".into()),
            ]
        };
        let (now, pending) = confirmed(found(), &Default::default());
        assert_eq!(
            now,
            vec![Resolution::Reap("r".into()), Resolution::Forget("f".into())]
        );
        assert_eq!(pending.len(), 3);
        // Seen again: acted on.
        let (now, pending) = confirmed(found(), &pending);
        assert_eq!(now.len(), 5);
        assert!(pending.is_empty());
        // A disagreement the next heartbeat does not repeat is dropped.
        let (_, pending) = confirmed(vec![Resolution::Vanished("v".into())], &Default::default());
        let (now, pending) = confirmed(vec![], &pending);
        assert!(now.is_empty() && pending.is_empty());
    }

    #[test]
    fn reconcile_is_quiet_when_all_agree() {
        let records = vec![
            server("a", VmState::Active, None, Some("h1")),
            server("s", VmState::Stopped, None, Some("h1")),
            server("elsewhere", VmState::Active, None, Some("h2")),
        ];
        let rep = vec![
            report("a", PowerState::Running),
            report("s", PowerState::Shutoff),
        ];
        assert!(reconcile("h1", &records, &rep).is_empty());
    }

    #[test]
    fn holds_resources_once_placed_until_deleted() {
        assert!(
            !server("x", VmState::Building, Some(TaskState::Scheduling), None).holds_resources()
        );
        assert!(
            server("x", VmState::Building, Some(TaskState::Spawning), Some("h")).holds_resources()
        );
        assert!(server("x", VmState::Error, None, Some("h")).holds_resources());
        assert!(!server("x", VmState::Deleted, None, Some("h")).holds_resources());
    }
}
