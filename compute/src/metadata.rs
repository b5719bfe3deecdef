//! What a guest learns about itself (cloud-init's OpenStack and EC2
//! metadata): the documents Nova serves, built from an instance as its host
//! keeps it. The config drive ([`crate::config_drive`]) carries them as
//! files; the metadata service ([`crate::metadata_service`]) answers them
//! by path ([`GuestView::answer`]).
//!
//! Shapes follow Nova's `nova/api/metadata/base.py`: `meta_data.json`
//! with `uuid`, `name`, `hostname`, `public_keys`, `keys`,
//! `availability_zone`, `launch_index`, `project_id`, `meta`,
//! `random_seed`; EC2's `meta-data.json` with `instance-id`, `hostname`,
//! `local-hostname`, `placement`, `public-keys`, `instance-type`,
//! `launch-index`.

use crate::agent::Placed;
use crate::instance::decode_user_data;
use base64::Engine;
use serde_json::{json, Value};

/// What the metadata of one instance is built from.
pub struct GuestView<'a> {
    pub instance: &'a Placed,
    /// The zone of its host.
    pub availability_zone: &'a str,
    /// 512 random bytes for the guest's entropy pool, new for each drive
    /// (Nova's `random_seed`).
    pub random_seed: &'a [u8],
}

/// A host name from a display name, as Nova sanitizes one: lower case,
/// spaces and underscores to `-`, only letters, digits, `-` and `.`, no
/// leading or trailing `-`/`.`, at most 63 characters; `server-<id>` when
/// nothing is left.
pub fn hostname(display_name: &str, id: &str) -> String {
    let mapped: String = display_name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == ' ' || c == '_' { '-' } else { c })
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    let trimmed: String = mapped
        .trim_matches(|c| c == '-' || c == '.')
        .chars()
        .take(63)
        .collect();
    let trimmed = trimmed.trim_end_matches(['-', '.']).to_string();
    if trimmed.is_empty() {
        format!("server-{id}")
    } else {
        trimmed
    }
}

/// The EC2 metadata versions the service lists at `/` (cloud-init asks
/// for `2009-04-04`); every one answers as `latest`.
const EC2_VERSIONS: [&str; 3] = ["1.0", "2009-04-04", "latest"];

/// The OpenStack metadata versions the service lists at `/openstack`, as
/// Nova lists them (cloud-init takes the newest it knows).
const OPENSTACK_VERSIONS: [&str; 9] = [
    "2012-08-10",
    "2013-04-04",
    "2013-10-17",
    "2015-10-15",
    "2016-06-30",
    "2016-10-06",
    "2017-02-22",
    "2018-08-27",
    "latest",
];

/// EC2's instance id: `i-` and eight hex digits (of the UUID here; Nova
/// uses its integer id).
pub fn ec2_instance_id(id: &str) -> String {
    let hex: String = id.chars().filter(char::is_ascii_hexdigit).take(8).collect();
    format!("i-{hex:0>8}")
}

impl GuestView<'_> {
    fn hostname(&self) -> String {
        hostname(&self.instance.name, &self.instance.id)
    }

    /// `openstack/latest/meta_data.json`.
    pub fn openstack_meta_data(&self) -> Value {
        let p = self.instance;
        let (public_keys, keys) = match (&p.guest.key_name, &p.guest.public_key) {
            (Some(name), Some(key)) => (
                json!({ name: key }),
                json!([{"name": name, "type": "ssh", "data": key}]),
            ),
            _ => (json!({}), json!([])),
        };
        json!({
            "uuid": p.id,
            "name": p.name,
            "hostname": self.hostname(),
            "launch_index": 0,
            "availability_zone": self.availability_zone,
            "project_id": p.account,
            "public_keys": public_keys,
            "keys": keys,
            "meta": p.metadata,
            "devices": [],
            "random_seed": base64::engine::general_purpose::STANDARD.encode(self.random_seed),
        })
    }

    /// `ec2/latest/meta-data.json`.
    pub fn ec2_meta_data(&self) -> Value {
        let p = self.instance;
        let public_keys = match (&p.guest.key_name, &p.guest.public_key) {
            (Some(_), Some(key)) => json!({"0": {"openssh-key": key}}),
            _ => json!({}),
        };
        json!({
            "instance-id": ec2_instance_id(&p.id),
            "ami-launch-index": 0,
            "hostname": self.hostname(),
            "local-hostname": self.hostname(),
            "public-hostname": self.hostname(),
            "instance-type": p.flavor.name,
            "placement": {"availability-zone": self.availability_zone},
            "public-keys": public_keys,
            "reservation-id": format!("r-{}", &ec2_instance_id(&p.id)[2..]),
            "security-groups": ["default"],
            "local-ipv4": p.guest.nics.first().map(|n| n.address.to_string()),
        })
    }

    /// `openstack/latest/network_data.json` as Nova writes it: a link per
    /// interface (by MAC), its fixed address with the network's gateway
    /// as the default route. No interface: empty lists, which cloud-init
    /// reads as "configure nothing from here".
    pub fn network_data(&self) -> Value {
        let p = self.instance;
        let mut links = Vec::new();
        let mut networks = Vec::new();
        for (i, nic) in p.guest.nics.iter().enumerate() {
            let link = nic.tap(&p.id, i);
            let subnet = nic.subnet();
            let netmask = subnet.as_ref().map(|s| s.netmask().to_string());
            links.push(json!({
                "id": link,
                "vif_id": nic.port_id(&p.id),
                "type": "bridge",
                "mtu": 1500,
                "ethernet_mac_address": nic.mac,
            }));
            let routes: Vec<Value> = subnet
                .map(|s| json!({"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": s.gateway().to_string()}))
                .into_iter()
                .collect();
            networks.push(json!({
                "id": format!("network{i}"),
                "type": "ipv4",
                "link": link,
                "ip_address": nic.address.to_string(),
                "netmask": netmask,
                "routes": routes,
                "network_id": nic.network_id,
                "services": [],
            }));
        }
        json!({"links": links, "networks": networks, "services": []})
    }

    /// The user data, decoded; `None` when the instance has none.
    pub fn user_data(&self) -> Option<Vec<u8>> {
        self.instance
            .guest
            .user_data
            .as_deref()
            .and_then(|u| decode_user_data(u).ok())
    }

    /// The metadata service's answer for `path` (its body), as Nova's
    /// serves it: `/openstack[/<version>[/<file>]]` and EC2's
    /// `/<version>[/meta-data[/<key>...]|/user-data]`, any version
    /// answering as `latest`; a listing is a name per line, a sub-tree's
    /// name ending in `/`. `None`: 404.
    pub fn answer(&self, path: &str) -> Option<Vec<u8>> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let lines = |names: &[&str]| names.join("\n").into_bytes();
        match parts.as_slice() {
            [] => Some(lines(&EC2_VERSIONS)),
            ["openstack"] => Some(lines(&OPENSTACK_VERSIONS)),
            ["openstack", _version] => {
                let mut names: Vec<&str> = vec![
                    "meta_data.json",
                    "network_data.json",
                    "vendor_data.json",
                    "vendor_data2.json",
                ];
                if self.instance.guest.user_data.is_some() {
                    names.push("user_data");
                }
                Some(lines(&names))
            }
            ["openstack", _version, file] => self
                .files()
                .into_iter()
                .find(|(name, _)| name.strip_prefix("openstack/latest/") == Some(*file))
                .map(|(_, body)| body),
            [_version] => {
                let mut names = vec!["meta-data"];
                if self.instance.guest.user_data.is_some() {
                    names.push("user-data");
                }
                Some(lines(&names))
            }
            [_version, "user-data"] => self.user_data(),
            [_version, "meta-data", keys @ ..] => self.ec2_answer(keys),
            _ => None,
        }
    }

    /// EC2's `meta-data` tree, walked down `keys`.
    fn ec2_answer(&self, keys: &[&str]) -> Option<Vec<u8>> {
        let tree = self.ec2_meta_data();
        // EC2 lists the keys as `<index>=<name>` and serves each by index.
        if keys == ["public-keys"] {
            let name = self.instance.guest.key_name.as_deref()?;
            return Some(format!("0={name}").into_bytes());
        }
        let mut node = &tree;
        for key in keys {
            node = node.get(key)?;
        }
        Some(match node {
            Value::Object(m) => {
                let names: Vec<String> = m
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| {
                        if v.is_object() {
                            format!("{k}/")
                        } else {
                            k.clone()
                        }
                    })
                    .collect();
                names.join("\n").into_bytes()
            }
            Value::String(s) => s.clone().into_bytes(),
            Value::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes(),
            Value::Null => return None,
            other => other.to_string().into_bytes(),
        })
    }

    /// Every file of a config drive, by its path on the drive.
    pub fn files(&self) -> Vec<(String, Vec<u8>)> {
        let doc = |v: Value| serde_json::to_vec(&v).expect("json");
        let mut files = vec![
            (
                "openstack/latest/meta_data.json".to_string(),
                doc(self.openstack_meta_data()),
            ),
            (
                "openstack/latest/network_data.json".to_string(),
                doc(self.network_data()),
            ),
            (
                "openstack/latest/vendor_data.json".to_string(),
                doc(json!({})),
            ),
            (
                "openstack/latest/vendor_data2.json".to_string(),
                doc(json!({})),
            ),
            (
                "ec2/latest/meta-data.json".to_string(),
                doc(self.ec2_meta_data()),
            ),
        ];
        if let Some(user_data) = self.user_data() {
            files.push(("openstack/latest/user_data".to_string(), user_data.clone()));
            files.push(("ec2/latest/user-data".to_string(), user_data));
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::{Flavor, GuestData};
    use crate::template_cache::ImageRef;

    fn placed(guest: GuestData) -> Placed {
        Placed {
            id: "6f1c2d3e-aaaa-bbbb-cccc-0123456789ab".into(),
            name: "Web Server_1".into(),
            account: "AUTH_test".into(),
            user: "tester".into(),
            image: ImageRef {
                id: "img".into(),
                disk_format: "qcow2".into(),
                os_hash_value: None,
                checksum: None,
                blake3: None,
                size: None,
            },
            flavor: Flavor {
                id: "1".into(),
                name: "m1.tiny".into(),
                vcpus: 1,
                ram: 128,
                disk: 1,
            },
            group: None,
            created: "t".into(),
            metadata: [("role".to_string(), "web".to_string())].into(),
            guest,
        }
    }

    #[test]
    fn network_data_describes_each_interface_with_its_route() {
        let nic = crate::network::Nic {
            network_id: "net-1".into(),
            network: "private".into(),
            cidr: "10.42.0.0/24".into(),
            address: "10.42.0.7".parse().unwrap(),
            mac: "fa:16:3e:01:02:03".into(),
        };
        let p = placed(GuestData {
            nics: vec![nic],
            ..GuestData::default()
        });
        let view = GuestView {
            instance: &p,
            availability_zone: "nova",
            random_seed: &[0u8; 4],
        };
        let d = view.network_data();
        assert_eq!(d["links"][0]["ethernet_mac_address"], "fa:16:3e:01:02:03");
        assert_eq!(d["links"][0]["id"], d["networks"][0]["link"]);
        assert_eq!(d["networks"][0]["ip_address"], "10.42.0.7");
        assert_eq!(d["networks"][0]["netmask"], "255.255.255.0");
        assert_eq!(d["networks"][0]["routes"][0]["gateway"], "10.42.0.1");
        assert_eq!(d["networks"][0]["network_id"], "net-1");
        assert_eq!(view.ec2_meta_data()["local-ipv4"], "10.42.0.7");
        assert_eq!(
            view.answer("/latest/meta-data/local-ipv4"),
            Some(b"10.42.0.7".to_vec())
        );
        let none = placed(GuestData::default());
        let view = GuestView {
            instance: &none,
            availability_zone: "nova",
            random_seed: &[0u8; 4],
        };
        assert_eq!(view.network_data()["links"], serde_json::json!([]));
    }

    #[test]
    fn the_service_answers_each_path_as_nova_does() {
        let guest = GuestData {
            key_name: Some("mykey".into()),
            public_key: Some("ssh-ed25519 AAAA me".into()),
            user_data: Some("aGVsbG8=".into()),
            config_drive: true,
            nics: Vec::new(),
        };
        let p = placed(guest);
        let view = GuestView {
            instance: &p,
            availability_zone: "nova",
            random_seed: &[7u8; 4],
        };
        let text = |path: &str| view.answer(path).map(|b| String::from_utf8(b).unwrap());
        assert!(text("/").unwrap().lines().any(|l| l == "2009-04-04"));
        assert!(text("/openstack").unwrap().ends_with("latest"));
        assert!(text("/openstack/latest/").unwrap().contains("user_data"));
        let meta: Value =
            serde_json::from_str(&text("/openstack/latest/meta_data.json").unwrap()).unwrap();
        assert_eq!(meta["public_keys"]["mykey"], "ssh-ed25519 AAAA me");
        assert_eq!(
            text("/openstack/2018-08-27/meta_data.json"),
            text("/openstack/latest/meta_data.json"),
            "a version answers as latest"
        );
        assert_eq!(text("/openstack/latest/user_data").unwrap(), "hello");
        assert_eq!(text("/latest/user-data").unwrap(), "hello");
        let keys = text("/latest/meta-data/").unwrap();
        for k in ["instance-id", "hostname", "placement/", "public-keys/"] {
            assert!(keys.lines().any(|l| l == k), "{k} in {keys}");
        }
        assert!(
            !keys.contains("local-ipv4"),
            "no interface, no address: {keys}"
        );
        assert_eq!(
            text("/2009-04-04/meta-data/instance-id").unwrap(),
            "i-6f1c2d3e"
        );
        assert_eq!(
            text("/latest/meta-data/placement/availability-zone").unwrap(),
            "nova"
        );
        assert_eq!(text("/latest/meta-data/public-keys").unwrap(), "0=mykey");
        assert_eq!(
            text("/latest/meta-data/public-keys/0/").unwrap(),
            "openssh-key"
        );
        assert_eq!(
            text("/latest/meta-data/public-keys/0/openssh-key").unwrap(),
            "ssh-ed25519 AAAA me"
        );
        for missing in [
            "/latest/meta-data/nothing",
            "/openstack/latest/nothing",
            "/a/b/c/d",
        ] {
            assert_eq!(view.answer(missing), None, "{missing}");
        }
    }

    #[test]
    fn host_names_are_sanitized_as_nova_does() {
        assert_eq!(hostname("Web Server_1", "x"), "web-server-1");
        assert_eq!(hostname("-a.b-", "x"), "a.b");
        assert_eq!(hostname("ünï", "x"), "n");
        assert_eq!(hostname("!!!", "abc"), "server-abc");
        assert_eq!(hostname(&"a".repeat(70), "x").len(), 63);
        assert_eq!(ec2_instance_id("6f1c2d3e-aaaa"), "i-6f1c2d3e");
    }

    #[test]
    fn the_documents_carry_the_key_and_the_user_data() {
        let guest = GuestData {
            key_name: Some("mykey".into()),
            public_key: Some("ssh-ed25519 AAAA me".into()),
            user_data: Some("I2Nsb3VkLWNvbmZpZwo=".into()),
            config_drive: true,
            nics: Vec::new(),
        };
        let p = placed(guest);
        let view = GuestView {
            instance: &p,
            availability_zone: "az1",
            random_seed: &[7; 512],
        };
        let meta = view.openstack_meta_data();
        assert_eq!(meta["uuid"], p.id.as_str());
        assert_eq!(meta["hostname"], "web-server-1");
        assert_eq!(meta["public_keys"]["mykey"], "ssh-ed25519 AAAA me");
        assert_eq!(meta["keys"][0]["data"], "ssh-ed25519 AAAA me");
        assert_eq!(meta["availability_zone"], "az1");
        assert_eq!(meta["meta"]["role"], "web");
        assert_eq!(meta["random_seed"].as_str().unwrap().len(), 684);
        let ec2 = view.ec2_meta_data();
        assert_eq!(
            ec2["public-keys"]["0"]["openssh-key"],
            "ssh-ed25519 AAAA me"
        );
        assert_eq!(ec2["instance-id"], "i-6f1c2d3e");
        assert_eq!(ec2["placement"]["availability-zone"], "az1");
        let files = view.files();
        let file = |name: &str| files.iter().find(|f| f.0 == name).map(|f| f.1.clone());
        assert_eq!(
            file("openstack/latest/user_data").unwrap(),
            b"#cloud-config\n"
        );
        assert_eq!(file("ec2/latest/user-data").unwrap(), b"#cloud-config\n");
        assert!(file("openstack/latest/network_data.json").is_some());
    }

    #[test]
    fn without_key_or_user_data_there_is_none() {
        let p = placed(GuestData::default());
        let view = GuestView {
            instance: &p,
            availability_zone: "az1",
            random_seed: &[0; 512],
        };
        assert_eq!(view.openstack_meta_data()["public_keys"], json!({}));
        assert_eq!(view.ec2_meta_data()["public-keys"], json!({}));
        assert!(!view.files().iter().any(|f| f.0.ends_with("user_data")));
    }
}
