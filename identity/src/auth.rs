//! `POST /v3/auth/tokens`: who is asking (the `password` or `token`
//! method), what scope they ask for (a project, a domain, the system, or
//! none), and the claims of the token that answers, as Keystone decides
//! them. Every refusal of credentials is the same 401, whether the user
//! exists or not.

use crate::error::IdentityError;
use crate::password;
use crate::store::{now_us, IdentityDb, Project, User};
use serde::Deserialize;
use service_kit::token::{Claims, RoleRef, Scope, TokenCheck};

/// The body of `POST /v3/auth/tokens`.
#[derive(Debug, Deserialize)]
pub struct AuthRequest {
    auth: Auth,
}

#[derive(Debug, Deserialize)]
struct Auth {
    identity: IdentityMethods,
    #[serde(default)]
    scope: Option<ScopeRequest>,
}

#[derive(Debug, Deserialize)]
struct IdentityMethods {
    methods: Vec<String>,
    #[serde(default)]
    password: Option<PasswordMethod>,
    #[serde(default)]
    token: Option<TokenMethod>,
}

#[derive(Debug, Deserialize)]
struct PasswordMethod {
    user: UserRef,
}

#[derive(Debug, Deserialize)]
struct UserRef {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    domain: Option<NameOrId>,
    password: String,
}

#[derive(Debug, Deserialize)]
struct TokenMethod {
    id: String,
}

/// `{"id": ...}` or `{"name": ...}`.
#[derive(Debug, Deserialize)]
struct NameOrId {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ProjectRef {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    domain: Option<NameOrId>,
}

#[derive(Debug, Deserialize)]
struct ScopeRequest {
    #[serde(default)]
    project: Option<ProjectRef>,
    #[serde(default)]
    domain: Option<NameOrId>,
    #[serde(default)]
    system: Option<serde_json::Value>,
}

fn bad(msg: &str) -> IdentityError {
    IdentityError::BadRequest(msg.into())
}

impl IdentityDb {
    fn domain_id_of(&self, d: &NameOrId) -> Result<String, IdentityError> {
        match (&d.id, &d.name) {
            (Some(id), _) => Ok(id.clone()),
            (None, Some(name)) => self
                .domain_by_name(name)?
                .map(|d| d.id)
                .ok_or(IdentityError::Unauthorized),
            (None, None) => Err(bad("Expecting to find id or name in domain.")),
        }
    }

    fn password_user(&self, u: &UserRef) -> Result<User, IdentityError> {
        let user = match (&u.id, &u.name) {
            (Some(id), _) => self.user(id)?,
            (None, Some(name)) => {
                let Some(d) = &u.domain else {
                    return Err(bad("Expecting to find domain in user."));
                };
                let domain = self.domain_id_of(d)?;
                self.user_by_name(&domain, name)?
            }
            (None, None) => return Err(bad("Expecting to find id or name in user.")),
        };
        let Some(user) = user else {
            password::verify_nobody(&u.password);
            return Err(IdentityError::Unauthorized);
        };
        if !password::verify(&u.password, &user.password_hash) || !user.enabled {
            return Err(IdentityError::Unauthorized);
        }
        Ok(user)
    }

    fn scoped_project(&self, p: &ProjectRef) -> Result<Project, IdentityError> {
        let project = match (&p.id, &p.name) {
            (Some(id), _) => self.project(id)?,
            (None, Some(name)) => {
                let Some(d) = &p.domain else {
                    return Err(bad("Expecting to find domain in project."));
                };
                let domain = self.domain_id_of(d)?;
                self.project_by_name(&domain, name)?
            }
            (None, None) => return Err(bad("Expecting to find id or name in project.")),
        };
        match project {
            Some(p) if p.enabled => Ok(p),
            _ => Err(IdentityError::Unauthorized),
        }
    }

    fn role_refs(&self, user_id: &str, project_id: &str) -> Result<Vec<RoleRef>, IdentityError> {
        Ok(self
            .roles_on(user_id, project_id)?
            .into_iter()
            .map(|r| RoleRef {
                id: r.id,
                name: r.name,
            })
            .collect())
    }

    /// Roles on the system scope: Nubo grants it to whoever holds `admin`
    /// on any project (Keystone's pre-system-scope notion of cloud admin).
    fn system_roles(&self, user_id: &str) -> Result<Vec<RoleRef>, IdentityError> {
        for p in self.projects_of(user_id)? {
            let roles = self.role_refs(user_id, &p.id)?;
            if let Some(admin) = roles.into_iter().find(|r| r.name == "admin") {
                return Ok(vec![admin]);
            }
        }
        Ok(Vec::new())
    }
}

/// Authenticates and decides the new token's claims.
pub fn authenticate(
    db: &IdentityDb,
    tokens: &TokenCheck,
    req: &AuthRequest,
    ttl_secs: u64,
) -> Result<Claims, IdentityError> {
    let methods = &req.auth.identity.methods;
    let (user, parent): (User, Option<Claims>) = if methods.iter().any(|m| m == "password") {
        let p = req
            .auth
            .identity
            .password
            .as_ref()
            .ok_or_else(|| bad("Expecting to find password in identity."))?;
        (db.password_user(&p.user)?, None)
    } else if methods.iter().any(|m| m == "token") {
        let t = req
            .auth
            .identity
            .token
            .as_ref()
            .ok_or_else(|| bad("Expecting to find token in identity."))?;
        let now = now_us() / 1_000_000;
        let parent = tokens
            .check(&t.id, now)
            .ok_or(IdentityError::Unauthorized)?;
        let user = db
            .user(&parent.user_id)?
            .filter(|u| u.enabled)
            .ok_or(IdentityError::Unauthorized)?;
        (user, Some(parent))
    } else {
        return Err(IdentityError::Unauthorized);
    };
    if db.domain(&user.domain_id)?.is_none_or(|d| !d.enabled) {
        return Err(IdentityError::Unauthorized);
    }
    let scope_req = req.auth.scope.as_ref();
    let (scope, roles) = match scope_req {
        Some(ScopeRequest {
            project: Some(p), ..
        }) => {
            let project = db.scoped_project(p)?;
            let roles = db.role_refs(&user.id, &project.id)?;
            if roles.is_empty() {
                return Err(IdentityError::Unauthorized);
            }
            (
                Scope::Project {
                    id: project.id,
                    name: project.name,
                    domain_id: project.domain_id,
                },
                roles,
            )
        }
        Some(ScopeRequest {
            domain: Some(d), ..
        }) => {
            let id = db.domain_id_of(d)?;
            let domain = db.domain(&id)?.ok_or(IdentityError::Unauthorized)?;
            // Domain roles are not modelled: a domain scope carries the
            // user's admin role if they are a cloud admin, nothing else.
            let roles = db.system_roles(&user.id)?;
            if roles.is_empty() {
                return Err(IdentityError::Unauthorized);
            }
            (
                Scope::Domain {
                    id: domain.id,
                    name: domain.name,
                },
                roles,
            )
        }
        Some(ScopeRequest {
            system: Some(_), ..
        }) => {
            let roles = db.system_roles(&user.id)?;
            if roles.is_empty() {
                return Err(IdentityError::Unauthorized);
            }
            (Scope::System, roles)
        }
        _ => match (&parent, &user.default_project_id) {
            // Re-scoping keeps nothing of the old scope; a token method
            // without a scope gives an unscoped token, as Keystone does.
            (None, Some(pid)) => match db.project(pid)? {
                Some(p) if p.enabled && !db.role_refs(&user.id, &p.id)?.is_empty() => {
                    let roles = db.role_refs(&user.id, &p.id)?;
                    (
                        Scope::Project {
                            id: p.id,
                            name: p.name,
                            domain_id: p.domain_id,
                        },
                        roles,
                    )
                }
                _ => (Scope::Unscoped, Vec::new()),
            },
            _ => (Scope::Unscoped, Vec::new()),
        },
    };
    let issued_at_us = now_us();
    let mut audit_ids = vec![audit_id()];
    let expires_at = match &parent {
        // A token made from another never outlives it.
        Some(p) => {
            audit_ids.push(p.audit_ids[0].clone());
            p.expires_at
        }
        None => issued_at_us / 1_000_000 + ttl_secs,
    };
    let methods = match &parent {
        Some(p) => {
            let mut m = p.methods.clone();
            if !m.iter().any(|x| x == "token") {
                m.push("token".into());
            }
            m
        }
        None => vec!["password".into()],
    };
    Ok(Claims {
        user_id: user.id,
        user_name: user.name,
        user_domain_id: user.domain_id,
        scope,
        roles,
        methods,
        issued_at_us,
        expires_at,
        audit_ids,
    })
}

/// A token's audit id: 16 random bytes, base64url (Keystone's form).
fn audit_id() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(service_kit::ids::rand_bytes::<16>())
}
