//! The identity records (domains, projects, users, roles, role
//! assignments, EC2 credentials, revocation events) in RocksDB through the
//! shared JSON store.
//!
//! Names are unique per domain (projects, users) or globally (roles). Each
//! name has an index record (`name/<kind>/<domain>/<name>` → id) written
//! with an atomic insert before the record itself, so two requests
//! creating one name cannot both win.

use crate::error::IdentityError;
use crate::password;
use serde::{Deserialize, Serialize};
use service_kit::json_store::{JsonStore, Updated};
use service_kit::token::RevocationEvent;
use std::path::Path;

/// The domain every deployment has (Keystone's `default`).
pub const DEFAULT_DOMAIN_ID: &str = "default";

/// A domain: a namespace of projects and users.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Domain {
    /// Its id.
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// A disabled domain's users cannot log in.
    pub enabled: bool,
}

/// A project (a tenant): owns a Swift account, images and servers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Project {
    /// Its id; the Swift account is `AUTH_<id>`.
    pub id: String,
    /// Its name, unique in its domain.
    pub name: String,
    /// Its domain.
    pub domain_id: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// A disabled project cannot be scoped to.
    pub enabled: bool,
}

/// A user.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct User {
    /// Its id.
    pub id: String,
    /// Its name, unique in its domain.
    pub name: String,
    /// Its domain.
    pub domain_id: String,
    /// The project a login without scope may default to.
    #[serde(default)]
    pub default_project_id: Option<String>,
    /// A disabled user cannot log in.
    pub enabled: bool,
    /// The password's PHC string (argon2id).
    pub password_hash: String,
}

/// A role.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Role {
    /// Its id.
    pub id: String,
    /// Its unique name.
    pub name: String,
}

/// A user holds a role on a project.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Assignment {
    /// The project.
    pub project_id: String,
    /// The user.
    pub user_id: String,
    /// The role.
    pub role_id: String,
}

/// An EC2-style credential: an S3 access key and secret for a user on a
/// project.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ec2Credential {
    /// The access key id.
    pub access: String,
    /// The secret key.
    pub secret: String,
    /// The user.
    pub user_id: String,
    /// The project.
    pub project_id: String,
}

/// The identity database.
pub struct IdentityDb {
    store: JsonStore,
}

/// A new random id in Keystone's form (32 hex digits).
pub fn new_hex_id() -> String {
    hex::encode(service_kit::ids::rand_bytes::<16>())
}

fn key(kind: &str, id: &str) -> String {
    format!("{kind}/{id}")
}

fn name_key(kind: &str, scope: &str, name: &str) -> String {
    format!("name/{kind}/{scope}/{name}")
}

fn assignment_key(a: &Assignment) -> String {
    format!("assign/{}/{}/{}", a.project_id, a.user_id, a.role_id)
}

impl IdentityDb {
    /// Opens (creating) the database and its default domain.
    pub fn open(path: &Path) -> Result<IdentityDb, IdentityError> {
        let db = IdentityDb {
            store: JsonStore::open(path)?,
        };
        if db.domain(DEFAULT_DOMAIN_ID)?.is_none() {
            let d = Domain {
                id: DEFAULT_DOMAIN_ID.into(),
                name: "Default".into(),
                description: "The default domain".into(),
                enabled: true,
            };
            db.store.insert(&name_key("domain", "-", &d.name), &d.id)?;
            db.store.put(&key("domain", &d.id), &d)?;
        }
        Ok(db)
    }

    fn id_by_name(
        &self,
        kind: &str,
        scope: &str,
        name: &str,
    ) -> Result<Option<String>, IdentityError> {
        Ok(self.store.get::<String>(&name_key(kind, scope, name))?)
    }

    /// A domain by id.
    pub fn domain(&self, id: &str) -> Result<Option<Domain>, IdentityError> {
        Ok(self.store.get(&key("domain", id))?)
    }

    /// A domain by name.
    pub fn domain_by_name(&self, name: &str) -> Result<Option<Domain>, IdentityError> {
        match self.id_by_name("domain", "-", name)? {
            Some(id) => self.domain(&id),
            None => Ok(None),
        }
    }

    /// Every domain.
    pub fn domains(&self) -> Result<Vec<Domain>, IdentityError> {
        Ok(self.store.scan("domain/")?)
    }

    /// Creates a project (with `id` if given: seeded projects).
    pub fn create_project(
        &self,
        mut p: Project,
        id: Option<String>,
    ) -> Result<Project, IdentityError> {
        if self.domain(&p.domain_id)?.is_none() {
            return Err(IdentityError::NotFound("domain", p.domain_id));
        }
        p.id = id.unwrap_or_else(new_hex_id);
        if !self
            .store
            .insert(&name_key("project", &p.domain_id, &p.name), &p.id)?
        {
            return Err(IdentityError::Conflict("project", p.name));
        }
        self.store.put(&key("project", &p.id), &p)?;
        Ok(p)
    }

    /// A project by id.
    pub fn project(&self, id: &str) -> Result<Option<Project>, IdentityError> {
        Ok(self.store.get(&key("project", id))?)
    }

    /// A project by domain and name.
    pub fn project_by_name(
        &self,
        domain_id: &str,
        name: &str,
    ) -> Result<Option<Project>, IdentityError> {
        match self.id_by_name("project", domain_id, name)? {
            Some(id) => self.project(&id),
            None => Ok(None),
        }
    }

    /// Every project.
    pub fn projects(&self) -> Result<Vec<Project>, IdentityError> {
        Ok(self.store.scan("project/")?)
    }

    /// Changes a project's description or enabled flag (names stay: a
    /// rename would race the name index for little use).
    pub fn update_project(
        &self,
        id: &str,
        change: impl FnOnce(&mut Project),
    ) -> Result<Project, IdentityError> {
        match self.store.update::<Project, ()>(&key("project", id), |p| {
            change(p);
            Ok(())
        })? {
            Updated::Done(p) => Ok(*p),
            _ => Err(IdentityError::NotFound("project", id.into())),
        }
    }

    /// Deletes a project and the role assignments on it.
    pub fn delete_project(&self, id: &str) -> Result<(), IdentityError> {
        let p = self
            .project(id)?
            .ok_or_else(|| IdentityError::NotFound("project", id.into()))?;
        for a in self.store.scan::<Assignment>(&format!("assign/{id}/"))? {
            self.store.delete(&assignment_key(&a))?;
        }
        self.store.delete(&key("project", id))?;
        self.store
            .delete(&name_key("project", &p.domain_id, &p.name))?;
        Ok(())
    }

    /// Creates a user with a hashed password.
    pub fn create_user(
        &self,
        name: &str,
        domain_id: &str,
        password: &str,
        default_project_id: Option<String>,
        enabled: bool,
    ) -> Result<User, IdentityError> {
        if self.domain(domain_id)?.is_none() {
            return Err(IdentityError::NotFound("domain", domain_id.into()));
        }
        let u = User {
            id: new_hex_id(),
            name: name.into(),
            domain_id: domain_id.into(),
            default_project_id,
            enabled,
            password_hash: password::hash(password),
        };
        if !self
            .store
            .insert(&name_key("user", domain_id, name), &u.id)?
        {
            return Err(IdentityError::Conflict("user", name.into()));
        }
        self.store.put(&key("user", &u.id), &u)?;
        Ok(u)
    }

    /// A user by id.
    pub fn user(&self, id: &str) -> Result<Option<User>, IdentityError> {
        Ok(self.store.get(&key("user", id))?)
    }

    /// A user by domain and name.
    pub fn user_by_name(&self, domain_id: &str, name: &str) -> Result<Option<User>, IdentityError> {
        match self.id_by_name("user", domain_id, name)? {
            Some(id) => self.user(&id),
            None => Ok(None),
        }
    }

    /// Every user.
    pub fn users(&self) -> Result<Vec<User>, IdentityError> {
        Ok(self.store.scan("user/")?)
    }

    /// Changes a user; a new password or a disabled user revokes the
    /// user's tokens.
    pub fn update_user(
        &self,
        id: &str,
        password: Option<&str>,
        enabled: Option<bool>,
        default_project_id: Option<Option<String>>,
    ) -> Result<User, IdentityError> {
        let hash = password.map(password::hash);
        let revokes = hash.is_some() || enabled == Some(false);
        let updated = self.store.update::<User, ()>(&key("user", id), |u| {
            if let Some(h) = hash {
                u.password_hash = h;
            }
            if let Some(e) = enabled {
                u.enabled = e;
            }
            if let Some(p) = default_project_id {
                u.default_project_id = p;
            }
            Ok(())
        })?;
        let Updated::Done(u) = updated else {
            return Err(IdentityError::NotFound("user", id.into()));
        };
        if revokes {
            self.revoke_user(id)?;
        }
        Ok(*u)
    }

    /// Deletes a user, their role assignments and credentials, and revokes
    /// their tokens.
    pub fn delete_user(&self, id: &str) -> Result<(), IdentityError> {
        let u = self
            .user(id)?
            .ok_or_else(|| IdentityError::NotFound("user", id.into()))?;
        for a in self.assignments()?.into_iter().filter(|a| a.user_id == id) {
            self.store.delete(&assignment_key(&a))?;
        }
        for c in self.ec2_credentials(Some(id))? {
            self.store.delete(&key("ec2", &c.access))?;
        }
        self.store.delete(&key("user", id))?;
        self.store
            .delete(&name_key("user", &u.domain_id, &u.name))?;
        self.revoke_user(id)
    }

    /// Creates a role.
    pub fn create_role(&self, name: &str) -> Result<Role, IdentityError> {
        let r = Role {
            id: new_hex_id(),
            name: name.into(),
        };
        if !self.store.insert(&name_key("role", "-", name), &r.id)? {
            return Err(IdentityError::Conflict("role", name.into()));
        }
        self.store.put(&key("role", &r.id), &r)?;
        Ok(r)
    }

    /// A role by id.
    pub fn role(&self, id: &str) -> Result<Option<Role>, IdentityError> {
        Ok(self.store.get(&key("role", id))?)
    }

    /// A role by name.
    pub fn role_by_name(&self, name: &str) -> Result<Option<Role>, IdentityError> {
        match self.id_by_name("role", "-", name)? {
            Some(id) => self.role(&id),
            None => Ok(None),
        }
    }

    /// Every role.
    pub fn roles(&self) -> Result<Vec<Role>, IdentityError> {
        Ok(self.store.scan("role/")?)
    }

    /// Deletes a role and its assignments (revoking the tokens that carry it).
    pub fn delete_role(&self, id: &str) -> Result<(), IdentityError> {
        let r = self
            .role(id)?
            .ok_or_else(|| IdentityError::NotFound("role", id.into()))?;
        for a in self.assignments()?.into_iter().filter(|a| a.role_id == id) {
            self.store.delete(&assignment_key(&a))?;
            self.revoke_user(&a.user_id)?;
        }
        self.store.delete(&key("role", id))?;
        self.store.delete(&name_key("role", "-", &r.name))?;
        Ok(())
    }

    /// Grants a role (idempotent).
    pub fn assign(&self, a: &Assignment) -> Result<(), IdentityError> {
        self.check_assignment_parts(a)?;
        self.store.put(&assignment_key(a), a)?;
        Ok(())
    }

    /// Whether the user holds the role on the project.
    pub fn has_assignment(&self, a: &Assignment) -> Result<bool, IdentityError> {
        Ok(self.store.get::<Assignment>(&assignment_key(a))?.is_some())
    }

    /// Takes a role back, revoking the user's tokens (they carry it).
    pub fn unassign(&self, a: &Assignment) -> Result<(), IdentityError> {
        if !self.has_assignment(a)? {
            return Err(IdentityError::NotFound(
                "role assignment",
                format!("{} on {} for {}", a.role_id, a.project_id, a.user_id),
            ));
        }
        self.store.delete(&assignment_key(a))?;
        self.revoke_user(&a.user_id)
    }

    fn check_assignment_parts(&self, a: &Assignment) -> Result<(), IdentityError> {
        if self.project(&a.project_id)?.is_none() {
            return Err(IdentityError::NotFound("project", a.project_id.clone()));
        }
        if self.user(&a.user_id)?.is_none() {
            return Err(IdentityError::NotFound("user", a.user_id.clone()));
        }
        if self.role(&a.role_id)?.is_none() {
            return Err(IdentityError::NotFound("role", a.role_id.clone()));
        }
        Ok(())
    }

    /// Every role assignment.
    pub fn assignments(&self) -> Result<Vec<Assignment>, IdentityError> {
        Ok(self.store.scan("assign/")?)
    }

    /// The roles a user holds on a project.
    pub fn roles_on(&self, user_id: &str, project_id: &str) -> Result<Vec<Role>, IdentityError> {
        let mut out = Vec::new();
        for a in self
            .store
            .scan::<Assignment>(&format!("assign/{project_id}/{user_id}/"))?
        {
            if let Some(r) = self.role(&a.role_id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The projects where a user holds any role.
    pub fn projects_of(&self, user_id: &str) -> Result<Vec<Project>, IdentityError> {
        let mut ids: Vec<String> = self
            .assignments()?
            .into_iter()
            .filter(|a| a.user_id == user_id)
            .map(|a| a.project_id)
            .collect();
        ids.sort();
        ids.dedup();
        let mut out = Vec::new();
        for id in ids {
            if let Some(p) = self.project(&id)? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Creates an EC2 credential for a user on a project.
    pub fn create_ec2(
        &self,
        user_id: &str,
        project_id: &str,
    ) -> Result<Ec2Credential, IdentityError> {
        // The access key names its project (`<project id>:<32 hex>`), as the
        // dev keys name their account (`test:tester`): the proxy finds the
        // account of a signed S3 request in its access key.
        let c = Ec2Credential {
            access: format!(
                "{project_id}:{}",
                hex::encode(service_kit::ids::rand_bytes::<16>())
            ),
            secret: hex::encode(service_kit::ids::rand_bytes::<16>()),
            user_id: user_id.into(),
            project_id: project_id.into(),
        };
        self.store.put(&key("ec2", &c.access), &c)?;
        Ok(c)
    }

    /// An EC2 credential by access key.
    pub fn ec2(&self, access: &str) -> Result<Option<Ec2Credential>, IdentityError> {
        Ok(self.store.get(&key("ec2", access))?)
    }

    /// EC2 credentials, of one user or all.
    pub fn ec2_credentials(
        &self,
        user_id: Option<&str>,
    ) -> Result<Vec<Ec2Credential>, IdentityError> {
        Ok(self
            .store
            .scan::<Ec2Credential>("ec2/")?
            .into_iter()
            .filter(|c| user_id.is_none_or(|u| c.user_id == u))
            .collect())
    }

    /// Deletes an EC2 credential.
    pub fn delete_ec2(&self, access: &str) -> Result<(), IdentityError> {
        if self.ec2(access)?.is_none() {
            return Err(IdentityError::NotFound("credential", access.into()));
        }
        self.store.delete(&key("ec2", access))?;
        Ok(())
    }

    /// Records a revocation event.
    pub fn revoke(&self, e: &RevocationEvent) -> Result<(), IdentityError> {
        let k = format!(
            "revoke/{:020}-{}",
            e.issued_before_us,
            hex::encode(service_kit::ids::rand_bytes::<4>())
        );
        self.store.put(&k, e)?;
        Ok(())
    }

    /// Revokes every token of a user issued until now.
    fn revoke_user(&self, user_id: &str) -> Result<(), IdentityError> {
        let now = now_us();
        self.revoke(&RevocationEvent {
            audit_id: None,
            user_id: Some(user_id.into()),
            issued_before_us: now,
            // No token outlives a week (the longest TTL the config allows).
            expires_at: now / 1_000_000 + 7 * 86_400,
        })
    }

    /// The revocation events that can still match a valid token.
    pub fn revocations(&self, now_secs: u64) -> Result<Vec<RevocationEvent>, IdentityError> {
        Ok(self
            .store
            .scan::<RevocationEvent>("revoke/")?
            .into_iter()
            .filter(|e| e.expires_at > now_secs)
            .collect())
    }
}

/// Unix microseconds now.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
