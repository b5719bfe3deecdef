//! `nubo identity`: the operator's CLI for the identity service. It logs
//! in like the `openstack` CLI (the `OS_*` variables or flags) and calls
//! the Keystone API; `rotate-keys` works on the key repository directly.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// `nubo identity ...`
#[derive(Debug, Args)]
pub struct IdentityArgs {
    /// The identity service (`http://127.0.0.1:5000/v3`).
    #[arg(long, env = "OS_AUTH_URL", default_value = "http://127.0.0.1:5000/v3")]
    auth_url: String,
    /// An admin user.
    #[arg(long, env = "OS_USERNAME", default_value = "admin")]
    username: String,
    /// Their password.
    #[arg(long, env = "OS_PASSWORD", default_value = "admin")]
    password: String,
    /// The project to scope the admin's token to.
    #[arg(long, env = "OS_PROJECT_NAME", default_value = "admin")]
    project: String,
    #[command(subcommand)]
    command: IdentityCommand,
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Projects.
    #[command(subcommand)]
    Project(NamedCommand),
    /// Users.
    #[command(subcommand)]
    User(UserCommand),
    /// Roles, and granting them.
    #[command(subcommand)]
    Role(RoleCommand),
    /// EC2-style S3 credentials.
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Keystone's `fernet_rotate` on a key repository: the staged key
    /// becomes primary, a new one is staged, the oldest beyond three go.
    RotateKeys {
        /// The repository (`<data-dir>/token-keys` for `nubo up`).
        #[arg(long)]
        key_dir: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum NamedCommand {
    /// Create one.
    Create { name: String },
    /// List them.
    List,
    /// Delete one (by name or id).
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user, optionally with a default project.
    Create {
        name: String,
        #[arg(long)]
        password: String,
        #[arg(long)]
        project: Option<String>,
    },
    /// List users.
    List,
    /// Delete a user (by name or id).
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
enum RoleCommand {
    /// Create a role.
    Create { name: String },
    /// List roles.
    List,
    /// Delete a role.
    Delete { name: String },
    /// Grant a role to a user on a project.
    Assign {
        #[arg(long)]
        user: String,
        #[arg(long)]
        project: String,
        role: String,
    },
    /// Take a role back.
    Unassign {
        #[arg(long)]
        user: String,
        #[arg(long)]
        project: String,
        role: String,
    },
}

#[derive(Debug, Subcommand)]
enum CredentialCommand {
    /// Create an S3 access key and secret for a user on a project.
    Create {
        #[arg(long)]
        user: String,
        #[arg(long)]
        project: String,
    },
}

struct Client {
    base: String,
    token: String,
}

impl Client {
    fn login(args: &IdentityArgs) -> Result<Client> {
        let base = args.auth_url.trim_end_matches('/').to_string();
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": args.username, "domain": {"id": "default"}, "password": args.password}}},
            "scope": {"project": {"name": args.project, "domain": {"id": "default"}}}}});
        let resp = ureq::post(&format!("{base}/auth/tokens"))
            .send_json(body)
            .map_err(explain)
            .context("logging in")?;
        let token = resp
            .header("x-subject-token")
            .context("no X-Subject-Token in the login answer")?
            .to_string();
        Ok(Client { base, token })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let req =
            ureq::request(method, &format!("{}{path}", self.base)).set("X-Auth-Token", &self.token);
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        }
        .map_err(explain)?;
        if resp.status() == 204 {
            return Ok(Value::Null);
        }
        Ok(resp.into_json()?)
    }

    /// The id of a project, user or role named by name or id.
    fn find(&self, kind: &str, name_or_id: &str) -> Result<String> {
        let listed = self.call("GET", &format!("/{kind}s"), None)?;
        let found = listed[format!("{kind}s")]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["id"] == name_or_id || x["name"] == name_or_id);
        match found.and_then(|x| x["id"].as_str()) {
            Some(id) => Ok(id.to_string()),
            None => bail!("no {kind} {name_or_id:?}"),
        }
    }
}

/// A refused call as the Keystone fault's message.
fn explain(e: ureq::Error) -> anyhow::Error {
    match e {
        ureq::Error::Status(code, resp) => {
            let v: Value = resp.into_json().unwrap_or(Value::Null);
            let message = v["error"]["message"].as_str().unwrap_or("").to_string();
            anyhow::anyhow!("HTTP {code}: {message}")
        }
        other => anyhow::anyhow!("{other}"),
    }
}

fn print_list(v: &Value, key: &str) {
    for x in v[key].as_array().into_iter().flatten() {
        println!(
            "{}  {}",
            x["id"].as_str().unwrap_or(""),
            x["name"].as_str().unwrap_or("")
        );
    }
}

/// Runs one `nubo identity` command.
pub fn run(args: IdentityArgs) -> Result<()> {
    if let IdentityCommand::RotateKeys { key_dir } = &args.command {
        service_kit::token::rotate_keys(key_dir, service_kit::token::MAX_ACTIVE_KEYS)?;
        println!("rotated the keys in {}", key_dir.display());
        return Ok(());
    }
    let c = Client::login(&args)?;
    match &args.command {
        IdentityCommand::RotateKeys { .. } => {} // done above, without a login
        IdentityCommand::Project(NamedCommand::Create { name }) => {
            let v = c.call(
                "POST",
                "/projects",
                Some(json!({"project": {"name": name, "domain_id": "default"}})),
            )?;
            println!("{}", v["project"]["id"].as_str().unwrap_or(""));
        }
        IdentityCommand::Project(NamedCommand::List) => {
            print_list(&c.call("GET", "/projects", None)?, "projects")
        }
        IdentityCommand::Project(NamedCommand::Delete { name }) => {
            let id = c.find("project", name)?;
            c.call("DELETE", &format!("/projects/{id}"), None)?;
        }
        IdentityCommand::User(UserCommand::Create {
            name,
            password,
            project,
        }) => {
            let mut user = json!({"name": name, "password": password, "domain_id": "default"});
            if let Some(p) = project {
                user["default_project_id"] = json!(c.find("project", p)?);
            }
            let v = c.call("POST", "/users", Some(json!({"user": user})))?;
            println!("{}", v["user"]["id"].as_str().unwrap_or(""));
        }
        IdentityCommand::User(UserCommand::List) => {
            print_list(&c.call("GET", "/users", None)?, "users")
        }
        IdentityCommand::User(UserCommand::Delete { name }) => {
            let id = c.find("user", name)?;
            c.call("DELETE", &format!("/users/{id}"), None)?;
        }
        IdentityCommand::Role(RoleCommand::Create { name }) => {
            let v = c.call("POST", "/roles", Some(json!({"role": {"name": name}})))?;
            println!("{}", v["role"]["id"].as_str().unwrap_or(""));
        }
        IdentityCommand::Role(RoleCommand::List) => {
            print_list(&c.call("GET", "/roles", None)?, "roles")
        }
        IdentityCommand::Role(RoleCommand::Delete { name }) => {
            let id = c.find("role", name)?;
            c.call("DELETE", &format!("/roles/{id}"), None)?;
        }
        IdentityCommand::Role(RoleCommand::Assign {
            user,
            project,
            role,
        })
        | IdentityCommand::Role(RoleCommand::Unassign {
            user,
            project,
            role,
        }) => {
            let method = if matches!(
                args.command,
                IdentityCommand::Role(RoleCommand::Assign { .. })
            ) {
                "PUT"
            } else {
                "DELETE"
            };
            let path = format!(
                "/projects/{}/users/{}/roles/{}",
                c.find("project", project)?,
                c.find("user", user)?,
                c.find("role", role)?
            );
            c.call(method, &path, None)?;
        }
        IdentityCommand::Credential(CredentialCommand::Create { user, project }) => {
            let user_id = c.find("user", user)?;
            let project_id = c.find("project", project)?;
            let v = c.call(
                "POST",
                &format!("/users/{user_id}/credentials/OS-EC2"),
                Some(json!({"tenant_id": project_id})),
            )?;
            println!(
                "access {}",
                v["credential"]["access"].as_str().unwrap_or("")
            );
            println!(
                "secret {}",
                v["credential"]["secret"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}
