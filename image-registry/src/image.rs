//! The image record and Glance's rules for it, as pure functions: the JSON
//! clients see, which fields they may change (JSON patch), who may see an
//! image, and list filtering, sorting and paging.

#![cfg(feature = "service")]

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Saving,
    Uploading,
    Importing,
    Active,
    Killed,
    Deactivated,
    Deleted,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Saving => "saving",
            Status::Uploading => "uploading",
            Status::Importing => "importing",
            Status::Active => "active",
            Status::Killed => "killed",
            Status::Deactivated => "deactivated",
            Status::Deleted => "deleted",
        }
    }
}

pub const DISK_FORMATS: [&str; 7] = ["raw", "qcow2", "vhd", "vhdx", "vmdk", "vdi", "iso"];
pub const CONTAINER_FORMATS: [&str; 3] = ["bare", "ovf", "ova"];
pub const VISIBILITIES: [&str; 4] = ["public", "private", "shared", "community"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub name: Option<String>,
    pub status: Status,
    pub visibility: String,
    pub protected: bool,
    pub os_hidden: bool,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub size: Option<u64>,
    pub virtual_size: Option<u64>,
    pub checksum: Option<String>,
    pub os_hash_value: Option<String>,
    /// BLAKE3 of the data, hex (`nubo_blake3`): computed in the same pass
    /// as the others, so compute hosts can verify a download at memory
    /// speed rather than at SHA-512's.
    #[serde(default)]
    pub blake3: Option<String>,
    pub min_disk: u64,
    pub min_ram: u64,
    /// The account that owns it (`AUTH_test`).
    pub owner: String,
    pub tags: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Additional properties (Glance's free-form `key: "value"` pairs).
    pub properties: BTreeMap<String, String>,
    /// Where the bytes live in the object store, once stored.
    pub location: Option<String>,
    /// Why the last upload or import failed (shown as `nubo_failure`).
    pub failure: Option<String>,
    /// Projects a `shared` image is shared with, and their answers.
    #[serde(default)]
    pub members: Vec<Member>,
}

/// A project an image is shared with (Glance's image member).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The project's id.
    pub member_id: String,
    /// `pending`, `accepted` or `rejected`: only the member decides.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

/// The statuses a member may set.
pub const MEMBER_STATUSES: [&str; 3] = ["pending", "accepted", "rejected"];

/// The project id of an account (`AUTH_test` → `test`): what Glance calls
/// a member or an owner.
pub fn project_of(account: &str) -> &str {
    account
        .strip_prefix(service_kit::auth::RESELLER_PREFIX)
        .unwrap_or(account)
}

impl Member {
    /// Glance's member view.
    pub fn to_json(&self, image_id: &str) -> Value {
        json!({
            "image_id": image_id, "member_id": self.member_id, "status": self.status,
            "created_at": self.created_at, "updated_at": self.updated_at,
            "schema": "/v2/schemas/member",
        })
    }
}

/// Attributes a client may never set or change.
const READ_ONLY: [&str; 15] = [
    "id",
    "status",
    "size",
    "virtual_size",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "nubo_blake3",
    "nubo_failure",
    "owner",
    "created_at",
    "updated_at",
    "file",
    "schema",
    "self",
];

/// Attributes with a type of their own (the rest are string properties).
const CORE: [&str; 9] = [
    "name",
    "visibility",
    "protected",
    "os_hidden",
    "disk_format",
    "container_format",
    "min_disk",
    "min_ram",
    "tags",
];

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ImageError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Attribute '{0}' is read-only.")]
    Forbidden(String),
    /// Glance keeps the `os_glance` namespace for itself (import state).
    #[error("Attribute '{0}' is reserved.")]
    Reserved(String),
}

/// Properties only the registry itself writes.
const RESERVED_PREFIX: &str = "os_glance";

impl Image {
    /// A new, queued image from a create request's body.
    pub fn create(
        id: String,
        owner: String,
        body: &Map<String, Value>,
    ) -> Result<Image, ImageError> {
        let t = service_kit::ids::now_iso8601();
        let mut img = Image {
            id,
            name: None,
            status: Status::Queued,
            visibility: "shared".into(),
            protected: false,
            os_hidden: false,
            disk_format: None,
            container_format: None,
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_value: None,
            blake3: None,
            min_disk: 0,
            min_ram: 0,
            owner,
            tags: Vec::new(),
            created_at: t.clone(),
            updated_at: t,
            properties: BTreeMap::new(),
            location: None,
            failure: None,
            members: Vec::new(),
        };
        for (k, v) in body {
            if k == "id" {
                // Glance lets a client choose the id.
                let id = v.as_str().ok_or_else(|| bad("id must be a string"))?;
                if !is_uuid(id) {
                    return Err(bad("id must be a UUID"));
                }
                img.id = id.to_string();
                continue;
            }
            img.set(k, v.clone())?;
        }
        Ok(img)
    }

    /// Sets one attribute as a client may (create, or a patch's add/replace).
    pub fn set(&mut self, key: &str, v: Value) -> Result<(), ImageError> {
        if READ_ONLY.contains(&key) || key == "location" || key == "locations" {
            return Err(ImageError::Forbidden(key.to_string()));
        }
        if key.starts_with(RESERVED_PREFIX) {
            return Err(ImageError::Reserved(key.to_string()));
        }
        let string = |v: &Value| -> Result<String, ImageError> {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad(format!("{key} must be a string")))
        };
        let one_of = |v: &Value, allowed: &[&str]| -> Result<String, ImageError> {
            let s = string(v)?;
            if allowed.contains(&s.as_str()) {
                Ok(s)
            } else {
                Err(bad(format!(
                    "Invalid value '{s}' for {key}: expected one of {allowed:?}"
                )))
            }
        };
        let number = |v: &Value| {
            v.as_u64()
                .ok_or_else(|| bad(format!("{key} must be a non-negative integer")))
        };
        match key {
            "name" => {
                self.name = match &v {
                    Value::Null => None,
                    v => {
                        let s = string(v)?;
                        if s.len() > 255 {
                            return Err(bad("name is longer than 255 characters"));
                        }
                        Some(s)
                    }
                }
            }
            "visibility" => self.visibility = one_of(&v, &VISIBILITIES)?,
            "protected" => {
                self.protected = v
                    .as_bool()
                    .ok_or_else(|| bad("protected must be a boolean"))?
            }
            "os_hidden" => {
                self.os_hidden = v
                    .as_bool()
                    .ok_or_else(|| bad("os_hidden must be a boolean"))?
            }
            "disk_format" | "container_format" => {
                if !matches!(self.status, Status::Queued) {
                    return Err(ImageError::Forbidden(key.to_string()));
                }
                let allowed: &[&str] = if key == "disk_format" {
                    &DISK_FORMATS
                } else {
                    &CONTAINER_FORMATS
                };
                let value = match &v {
                    Value::Null => None,
                    v => Some(one_of(v, allowed)?),
                };
                if key == "disk_format" {
                    self.disk_format = value;
                } else {
                    self.container_format = value;
                }
            }
            "min_disk" => self.min_disk = number(&v)?,
            "min_ram" => self.min_ram = number(&v)?,
            "tags" => {
                let tags = v.as_array().ok_or_else(|| bad("tags must be a list"))?;
                let mut out = Vec::new();
                for t in tags {
                    let t = t.as_str().ok_or_else(|| bad("tags must be strings"))?;
                    check_tag(t)?;
                    if !out.iter().any(|o: &String| o == t) {
                        out.push(t.to_string());
                    }
                }
                self.tags = out;
            }
            _ => {
                if key.is_empty() || key.len() > 255 {
                    return Err(bad("property names are 1 to 255 characters"));
                }
                let s = string(&v)?;
                if s.len() > 65_535 {
                    return Err(bad(format!("property {key} is too long")));
                }
                self.properties.insert(key.to_string(), s);
            }
        }
        Ok(())
    }

    /// A patch's `remove`: core attributes cannot be removed, properties can.
    fn remove(&mut self, key: &str) -> Result<(), ImageError> {
        if READ_ONLY.contains(&key) || CORE.contains(&key) {
            return Err(ImageError::Forbidden(key.to_string()));
        }
        if key.starts_with(RESERVED_PREFIX) {
            return Err(ImageError::Reserved(key.to_string()));
        }
        self.properties
            .remove(key)
            .map(|_| ())
            .ok_or_else(|| bad(format!("Property {key} does not exist.")))
    }

    /// Applies an `application/openstack-images-v2.1-json-patch` document:
    /// a list of `{"op": add|replace|remove, "path": "/name", "value": ...}`.
    /// All or nothing.
    pub fn apply_patch(&self, ops: &Value) -> Result<Image, ImageError> {
        let ops = ops
            .as_array()
            .ok_or_else(|| bad("a JSON patch is a list of operations"))?;
        let mut img = self.clone();
        for op in ops {
            let kind = op["op"]
                .as_str()
                .ok_or_else(|| bad("each operation needs an op"))?;
            let path = op["path"]
                .as_str()
                .ok_or_else(|| bad("each operation needs a path"))?;
            let key = path
                .strip_prefix('/')
                .filter(|k| !k.is_empty() && !k.contains('/'))
                .ok_or_else(|| bad(format!("Invalid JSON pointer for this resource: '{path}'")))?;
            let key = key.replace("~1", "/").replace("~0", "~");
            match kind {
                "add" | "replace" => {
                    let value = op
                        .get("value")
                        .cloned()
                        .ok_or_else(|| bad("add and replace need a value"))?;
                    if READ_ONLY.contains(&key.as_str()) {
                        return Err(ImageError::Forbidden(key));
                    }
                    if kind == "replace"
                        && !CORE.contains(&key.as_str())
                        && !img.properties.contains_key(&key)
                    {
                        return Err(bad(format!("Property {key} does not exist.")));
                    }
                    img.set(&key, value)?;
                }
                "remove" => img.remove(&key)?,
                other => return Err(bad(format!("Operation {other} is not supported"))),
            }
        }
        img.updated_at = service_kit::ids::now_iso8601();
        Ok(img)
    }

    /// The image as Glance shows it.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("name".into(), json!(self.name));
        m.insert("status".into(), json!(self.status.name()));
        m.insert("visibility".into(), json!(self.visibility));
        m.insert("protected".into(), json!(self.protected));
        m.insert("os_hidden".into(), json!(self.os_hidden));
        m.insert("disk_format".into(), json!(self.disk_format));
        m.insert("container_format".into(), json!(self.container_format));
        m.insert("size".into(), json!(self.size));
        m.insert("virtual_size".into(), json!(self.virtual_size));
        m.insert("checksum".into(), json!(self.checksum));
        m.insert(
            "os_hash_algo".into(),
            json!(self.os_hash_value.as_ref().map(|_| "sha512")),
        );
        m.insert("os_hash_value".into(), json!(self.os_hash_value));
        m.insert("nubo_blake3".into(), json!(self.blake3));
        if let Some(why) = &self.failure {
            m.insert("nubo_failure".into(), json!(why));
        }
        m.insert("min_disk".into(), json!(self.min_disk));
        m.insert("min_ram".into(), json!(self.min_ram));
        m.insert("owner".into(), json!(self.owner));
        m.insert("tags".into(), json!(self.tags));
        m.insert("created_at".into(), json!(self.created_at));
        m.insert("updated_at".into(), json!(self.updated_at));
        m.insert("self".into(), json!(format!("/v2/images/{}", self.id)));
        m.insert("file".into(), json!(format!("/v2/images/{}/file", self.id)));
        m.insert("schema".into(), json!("/v2/schemas/image"));
        for (k, v) in &self.properties {
            m.entry(k.clone()).or_insert_with(|| json!(v));
        }
        Value::Object(m)
    }

    /// Whether `account` may see the image (admins see everything; a
    /// member of a shared image sees it whatever its answer, as in Glance).
    pub fn visible_to(&self, account: &str, admin: bool) -> bool {
        admin
            || self.owner == account
            || matches!(self.visibility.as_str(), "public" | "community")
            || self.member(account).is_some()
    }

    /// Whether `account` finds the image in its listing: as
    /// [`Image::visible_to`], but a shared image only once accepted.
    pub fn listed_for(&self, account: &str, admin: bool) -> bool {
        admin
            || self.owner == account
            || matches!(self.visibility.as_str(), "public" | "community")
            || self.member(account).is_some_and(|m| m.status == "accepted")
    }

    /// `account`'s membership, if the image is shared with it.
    pub fn member(&self, account: &str) -> Option<&Member> {
        if self.visibility != "shared" {
            return None;
        }
        let project = project_of(account);
        self.members.iter().find(|m| m.member_id == project)
    }

    /// Whether `account` may change or delete it.
    pub fn owned_by(&self, account: &str, admin: bool) -> bool {
        admin || self.owner == account
    }
}

pub fn check_tag(t: &str) -> Result<(), ImageError> {
    if t.is_empty() || t.len() > 255 {
        return Err(bad("tags are 1 to 255 characters"));
    }
    Ok(())
}

fn bad(msg: impl Into<String>) -> ImageError {
    ImageError::BadRequest(msg.into())
}

pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `GET /v2/images` query: filters, sort, paging.
#[derive(Debug, Default)]
pub struct ListQuery {
    pub filters: Vec<(String, String)>,
    /// (key, descending), in order of precedence.
    pub sort: Vec<(String, bool)>,
    pub marker: Option<String>,
    pub limit: usize,
}

const SORTABLE: [&str; 9] = [
    "name",
    "status",
    "created_at",
    "updated_at",
    "size",
    "disk_format",
    "container_format",
    "visibility",
    "id",
];

impl ListQuery {
    /// Parses Glance's query parameters: `limit`, `marker`, `sort_key` +
    /// `sort_dir` or `sort=k1:asc,k2:desc`, and `name|status|visibility|
    /// disk_format|container_format|owner|tag|member_status|size_min|size_max`.
    pub fn parse(pairs: &[(String, String)]) -> Result<ListQuery, ImageError> {
        let mut q = ListQuery {
            limit: 25,
            ..Default::default()
        };
        let mut sort_keys = Vec::new();
        let mut sort_dirs = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "limit" => {
                    q.limit = v
                        .parse()
                        .map_err(|_| bad("limit param must be an integer"))?;
                    q.limit = q.limit.min(1000);
                }
                "marker" => q.marker = Some(v.clone()),
                "sort_key" => sort_keys.push(v.clone()),
                "sort_dir" => sort_dirs.push(v.clone()),
                "sort" => {
                    for part in v.split(',') {
                        let (key, dir) = part.split_once(':').unwrap_or((part, "desc"));
                        q.sort.push((key.trim().to_string(), dir.trim() == "desc"));
                    }
                }
                "name" | "status" | "visibility" | "disk_format" | "container_format" | "owner"
                | "tag" | "size_min" | "size_max" | "os_hidden" | "protected" | "id" => {
                    q.filters.push((k.clone(), v.clone()))
                }
                "member_status" => {}
                _ => q.filters.push((k.clone(), v.clone())),
            }
        }
        for (i, key) in sort_keys.iter().enumerate() {
            let dir = sort_dirs
                .get(i)
                .or(sort_dirs.first())
                .map(String::as_str)
                .unwrap_or("desc");
            if dir != "asc" && dir != "desc" {
                return Err(bad(format!("Invalid sort direction: {dir}")));
            }
            q.sort.push((key.clone(), dir == "desc"));
        }
        for (key, _) in &q.sort {
            if !SORTABLE.contains(&key.as_str()) {
                return Err(bad(format!("Invalid sort key: {key}")));
            }
        }
        if q.sort.is_empty() {
            q.sort.push(("created_at".into(), true));
        }
        // Ties break by id, so paging is stable.
        q.sort.push(("id".into(), true));
        Ok(q)
    }

    fn matches(&self, img: &Image) -> bool {
        self.filters.iter().all(|(k, v)| {
            let num = |s: &str| s.parse::<u64>().ok();
            match k.as_str() {
                "name" => img.name.as_deref() == Some(v.as_str()),
                "status" => img.status.name() == v,
                "visibility" => v == "all" || img.visibility == *v,
                "disk_format" => img.disk_format.as_deref() == Some(v.as_str()),
                "container_format" => img.container_format.as_deref() == Some(v.as_str()),
                "owner" => img.owner == *v,
                "id" => img.id == *v,
                "tag" => img.tags.contains(v),
                "size_min" => img.size.zip(num(v)).is_some_and(|(s, m)| s >= m),
                "size_max" => img.size.zip(num(v)).is_some_and(|(s, m)| s <= m),
                "os_hidden" => (v == "true") == img.os_hidden,
                "protected" => (v == "true") == img.protected,
                other => img.properties.get(other) == Some(v),
            }
        })
    }

    fn sort_value(img: &Image, key: &str) -> (u64, String) {
        match key {
            "name" => (0, img.name.clone().unwrap_or_default()),
            "status" => (0, img.status.name().into()),
            "created_at" => (0, img.created_at.clone()),
            "updated_at" => (0, img.updated_at.clone()),
            "size" => (img.size.unwrap_or(0), String::new()),
            "disk_format" => (0, img.disk_format.clone().unwrap_or_default()),
            "container_format" => (0, img.container_format.clone().unwrap_or_default()),
            "visibility" => (0, img.visibility.clone()),
            _ => (0, img.id.clone()),
        }
    }

    /// The page to show and whether more follow.
    pub fn page(&self, mut images: Vec<Image>) -> Result<(Vec<Image>, bool), ImageError> {
        images.retain(|i| self.matches(i) && (i.status != Status::Deleted));
        // Hidden images are listed only when asked for.
        if !self.filters.iter().any(|(k, _)| k == "os_hidden") {
            images.retain(|i| !i.os_hidden);
        }
        images.sort_by(|a, b| {
            for (key, desc) in &self.sort {
                let o = Self::sort_value(a, key).cmp(&Self::sort_value(b, key));
                let o = if *desc { o.reverse() } else { o };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            std::cmp::Ordering::Equal
        });
        let start =
            match &self.marker {
                None => 0,
                Some(m) => {
                    images.iter().position(|i| &i.id == m).ok_or_else(|| {
                        bad(format!("Invalid marker. Image {m} could not be found."))
                    })? + 1
                }
            };
        let rest: Vec<Image> = images.into_iter().skip(start).collect();
        let more = rest.len() > self.limit;
        Ok((rest.into_iter().take(self.limit).collect(), more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(body: Value) -> Image {
        Image::create(
            service_kit::ids::new_id(),
            "AUTH_test".into(),
            body.as_object().unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn create_sets_core_attributes_and_properties() {
        let i = img(
            json!({"name": "cirros", "disk_format": "qcow2", "container_format": "bare",
            "visibility": "public", "min_ram": 64, "hw_architecture": "x86_64", "tags": ["a", "a", "b"]}),
        );
        assert_eq!(i.status, Status::Queued);
        assert_eq!(i.tags, ["a", "b"]);
        let j = i.to_json();
        assert_eq!(j["hw_architecture"], "x86_64");
        assert_eq!(j["os_hash_algo"], Value::Null);
        assert_eq!(j["file"], format!("/v2/images/{}/file", i.id));
        assert!(is_uuid(&i.id));
    }

    #[test]
    fn create_refuses_read_only_and_bad_values() {
        let owner = "AUTH_test".to_string();
        for body in [
            json!({"status": "active"}),
            json!({"size": 5}),
            json!({"disk_format": "exe"}),
            json!({"visibility": "everyone"}),
            json!({"min_ram": -1}),
            json!({"id": "not-a-uuid"}),
        ] {
            assert!(
                Image::create(
                    service_kit::ids::new_id(),
                    owner.clone(),
                    body.as_object().unwrap()
                )
                .is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn patches_apply_all_or_nothing() {
        let i = img(json!({"name": "a", "os_distro": "debian"}));
        let p = i
            .apply_patch(&json!([
                {"op": "replace", "path": "/name", "value": "b"},
                {"op": "add", "path": "/hw_disk_bus", "value": "virtio"},
                {"op": "remove", "path": "/os_distro"}
            ]))
            .unwrap();
        assert_eq!(p.name.as_deref(), Some("b"));
        assert_eq!(
            p.properties.get("hw_disk_bus").map(String::as_str),
            Some("virtio")
        );
        assert!(!p.properties.contains_key("os_distro"));
        let err = i
            .apply_patch(&json!([
                {"op": "replace", "path": "/name", "value": "c"},
                {"op": "replace", "path": "/status", "value": "active"}
            ]))
            .unwrap_err();
        assert_eq!(err, ImageError::Forbidden("status".into()));
        assert!(i
            .apply_patch(&json!([{"op": "remove", "path": "/name"}]))
            .is_err());
        assert!(i
            .apply_patch(&json!([{"op": "replace", "path": "/nope", "value": "x"}]))
            .is_err());
        assert!(i
            .apply_patch(&json!([{"op": "move", "path": "/name"}]))
            .is_err());
    }

    #[test]
    fn lists_filter_sort_and_page() {
        let mut all = Vec::new();
        for (n, size) in [("c", 30u64), ("a", 10), ("b", 20), ("d", 40)] {
            let mut i = img(json!({"name": n, "disk_format": "raw"}));
            i.size = Some(size);
            all.push(i);
        }
        all[3].disk_format = Some("qcow2".into());
        let pairs = |s: &[(&str, &str)]| {
            s.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let q = ListQuery::parse(&pairs(&[
            ("sort_key", "name"),
            ("sort_dir", "asc"),
            ("limit", "2"),
        ]))
        .unwrap();
        let (page, more) = q.page(all.clone()).unwrap();
        let names: Vec<_> = page.iter().map(|i| i.name.clone().unwrap()).collect();
        assert_eq!((names, more), (vec!["a".to_string(), "b".into()], true));
        let q = ListQuery::parse(&pairs(&[("sort", "name:asc"), ("marker", &page[1].id)])).unwrap();
        let (page, more) = q.page(all.clone()).unwrap();
        assert_eq!(page.len(), 2);
        assert!(!more);
        let q = ListQuery::parse(&pairs(&[("disk_format", "raw"), ("size_min", "20")])).unwrap();
        assert_eq!(q.page(all.clone()).unwrap().0.len(), 2);
        assert!(ListQuery::parse(&pairs(&[("sort_key", "secret")])).is_err());
        assert!(ListQuery::parse(&pairs(&[("marker", "x")]))
            .unwrap()
            .page(all)
            .is_err());
    }
}
