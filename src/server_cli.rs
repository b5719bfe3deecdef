//! `nubo server ...` and `nubo keypair ...`: a person's client of the
//! compute API, to launch a VM and reach it from the shell without writing
//! JSON (create with an image, flavor, key pair and user data; list, show,
//! console log, interactive console, delete; key pairs made, imported,
//! listed, deleted).

use crate::service_client::{Login, ServiceClient};
use anyhow::{bail, Context, Result};
use base64::Engine;
use http::Method;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The compute API.
    #[arg(
        long,
        env = "NUBO_COMPUTE_URL",
        default_value = "http://127.0.0.1:8774/v2.1"
    )]
    compute_url: String,
    #[command(flatten)]
    login: Login,
    #[command(subcommand)]
    command: ServerCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ServerCommand {
    /// Launch a server.
    Create {
        name: String,
        /// The image's id.
        #[arg(long)]
        image: String,
        /// The flavor's id or name.
        #[arg(long)]
        flavor: String,
        /// A key pair the guest receives (`nubo server keypair create`).
        #[arg(long)]
        key_name: Option<String>,
        /// A file of user data for cloud-init (sent base64-encoded).
        #[arg(long)]
        user_data: Option<PathBuf>,
        /// A network (name or id) to have an interface on, as
        /// `NETWORK` or `NETWORK=ADDRESS` for a fixed address; repeated for
        /// several. `none`: no interface. Default: the first network.
        #[arg(long)]
        network: Vec<String>,
        /// Wait until it is ACTIVE (or ERROR), at most this many seconds.
        #[arg(long)]
        wait: Option<u64>,
    },
    List,
    Show {
        id: String,
    },
    /// Its interactive serial console (Ctrl-] leaves).
    Console {
        id: String,
        /// With piped input: the command ends once the input is over and
        /// the guest has printed nothing for this many seconds.
        #[arg(long, default_value_t = 2)]
        quiet_secs: u64,
    },
    /// The last lines of its serial console.
    ConsoleLog {
        id: String,
        #[arg(long)]
        length: Option<u64>,
    },
    Delete {
        id: String,
    },
    /// The user's SSH key pairs.
    #[command(subcommand)]
    Keypair(KeypairCommand),
}

#[derive(Debug, clap::Subcommand)]
enum KeypairCommand {
    /// Have the API make an ed25519 key pair; its private key is printed
    /// once (or written to `--private-key`, mode 0600).
    Create {
        name: String,
        #[arg(long)]
        private_key: Option<PathBuf>,
    },
    /// Import a public key (an OpenSSH `.pub` file).
    Import {
        name: String,
        #[arg(long)]
        public_key: PathBuf,
    },
    List,
    Delete {
        name: String,
    },
}

pub fn run(args: ServerArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let c = ServiceClient::login(&args.login, &args.compute_url, "compute API").await?;
        match args.command {
            ServerCommand::Create {
                name,
                image,
                flavor,
                key_name,
                user_data,
                network,
                wait,
            } => {
                let flavor = id_by_name(&c, "flavors", "name", &flavor).await?;
                let mut server = json!({"name": name, "imageRef": image, "flavorRef": flavor});
                if let Some(k) = key_name {
                    server["key_name"] = Value::String(k);
                }
                if let Some(file) = user_data {
                    let bytes = std::fs::read(&file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    server["user_data"] =
                        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
                }
                if network.iter().any(|n| n == "none") {
                    server["networks"] = json!("none");
                } else if !network.is_empty() {
                    let mut nics = Vec::new();
                    for n in &network {
                        let (net, fixed) = match n.split_once('=') {
                            Some((net, ip)) => (net, Some(ip)),
                            None => (n.as_str(), None),
                        };
                        let mut nic =
                            json!({"uuid": id_by_name(&c, "os-networks", "label", net).await?});
                        if let Some(ip) = fixed {
                            nic["fixed_ip"] = json!(ip);
                        }
                        nics.push(nic);
                    }
                    server["networks"] = Value::Array(nics);
                }
                let made = c
                    .json(Method::POST, "/servers", Some(json!({ "server": server })))
                    .await?;
                let id = made["server"]["id"]
                    .as_str()
                    .context("the API gave no server id")?
                    .to_string();
                match wait {
                    None => println!("{id} BUILD"),
                    Some(secs) => {
                        let s = wait_built(&c, &id, Duration::from_secs(secs)).await?;
                        println!(
                            "{id} {} {}",
                            s["status"].as_str().unwrap_or("?"),
                            addresses(&s)
                        );
                    }
                }
                Ok(())
            }
            ServerCommand::List => {
                let v = c.json(Method::GET, "/servers/detail", None).await?;
                println!(
                    "{:<36}  {:<20} {:<8} {:<12} {:<12} Networks",
                    "ID", "Name", "Status", "Host", "Key"
                );
                for s in v["servers"].as_array().into_iter().flatten() {
                    println!(
                        "{:<36}  {:<20} {:<8} {:<12} {:<12} {}",
                        s["id"].as_str().unwrap_or(""),
                        s["name"].as_str().unwrap_or(""),
                        s["status"].as_str().unwrap_or(""),
                        s["OS-EXT-SRV-ATTR:host"].as_str().unwrap_or(""),
                        s["key_name"].as_str().unwrap_or(""),
                        addresses(s)
                    );
                }
                Ok(())
            }
            ServerCommand::Show { id } => {
                let v = c.json(Method::GET, &format!("/servers/{id}"), None).await?;
                println!("{}", serde_json::to_string_pretty(&v["server"])?);
                Ok(())
            }
            ServerCommand::Console { id, quiet_secs } => {
                crate::server_console::attach(&c, &id, Duration::from_secs(quiet_secs)).await
            }
            ServerCommand::ConsoleLog { id, length } => {
                let mut action = json!({});
                if let Some(n) = length {
                    action["length"] = json!(n);
                }
                let v = c
                    .json(
                        Method::POST,
                        &format!("/servers/{id}/action"),
                        Some(json!({ "os-getConsoleOutput": action })),
                    )
                    .await?;
                print!("{}", v["output"].as_str().unwrap_or(""));
                Ok(())
            }
            ServerCommand::Delete { id } => {
                c.json(Method::DELETE, &format!("/servers/{id}"), None)
                    .await?;
                println!("deleting {id}");
                Ok(())
            }
            ServerCommand::Keypair(k) => keypair(&c, k).await,
        }
    });
    // Not waiting for the console's stdin reader: it blocks in read(2)
    // until the next key, which may never come.
    rt.shutdown_background();
    result
}

async fn keypair(c: &ServiceClient, command: KeypairCommand) -> Result<()> {
    match command {
        KeypairCommand::Create { name, private_key } => {
            let v = c
                .json(
                    Method::POST,
                    "/os-keypairs",
                    Some(json!({"keypair": {"name": name}})),
                )
                .await?;
            let private = v["keypair"]["private_key"]
                .as_str()
                .context("the API returned no private key")?;
            match private_key {
                Some(path) => {
                    write_private(&path, private)?;
                    println!(
                        "{name} {} (private key in {})",
                        v["keypair"]["fingerprint"].as_str().unwrap_or(""),
                        path.display()
                    );
                }
                None => print!("{private}"),
            }
            Ok(())
        }
        KeypairCommand::Import { name, public_key } => {
            let line = std::fs::read_to_string(&public_key)
                .with_context(|| format!("reading {}", public_key.display()))?;
            let v = c
                .json(
                    Method::POST,
                    "/os-keypairs",
                    Some(json!({"keypair": {"name": name, "public_key": line.trim()}})),
                )
                .await?;
            println!(
                "{name} {}",
                v["keypair"]["fingerprint"].as_str().unwrap_or("")
            );
            Ok(())
        }
        KeypairCommand::List => {
            let v = c.json(Method::GET, "/os-keypairs", None).await?;
            for k in v["keypairs"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {}",
                    k["keypair"]["name"].as_str().unwrap_or(""),
                    k["keypair"]["fingerprint"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        KeypairCommand::Delete { name } => {
            let path = format!("/os-keypairs/{}", service_kit::http_util::encode(&name));
            c.json(Method::DELETE, &path, None).await?;
            println!("deleted {name}");
            Ok(())
        }
    }
}

/// A private key file only its owner reads, written whole or not at all.
fn write_private(path: &std::path::Path, key: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist)", path.display()))?;
    f.write_all(key.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The id of one of a collection's items (`flavors`, `os-networks`) given
/// its id or its name (the `name_key` field).
async fn id_by_name(
    c: &ServiceClient,
    collection: &str,
    name_key: &str,
    wanted: &str,
) -> Result<String> {
    let v = c.json(Method::GET, &format!("/{collection}"), None).await?;
    let key = collection.trim_start_matches("os-");
    let items = v[key].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .find(|f| f["id"] == wanted)
        .or_else(|| items.iter().find(|f| f[name_key] == wanted))
        .and_then(|f| f["id"].as_str())
        .map(str::to_string)
        .with_context(|| format!("no {} {wanted}", key.trim_end_matches('s')))
}

/// Polls a new server until it is ACTIVE; ERROR or the deadline fail.
async fn wait_built(c: &ServiceClient, id: &str, limit: Duration) -> Result<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let v = c.json(Method::GET, &format!("/servers/{id}"), None).await?;
        let s = &v["server"];
        match s["status"].as_str() {
            Some("ACTIVE") => return Ok(s.clone()),
            Some("ERROR") => bail!(
                "server {id} failed: {}",
                s["fault"]["message"].as_str().unwrap_or("no reason given")
            ),
            _ if Instant::now() > deadline => bail!("server {id} is not ACTIVE after {limit:?}"),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The addresses of a server view, `net=addr,...`.
fn addresses(s: &Value) -> String {
    let Some(nets) = s["addresses"].as_object() else {
        return String::new();
    };
    nets.iter()
        .map(|(net, addrs)| {
            let list: Vec<&str> = addrs
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["addr"].as_str())
                .collect();
            format!("{net}={}", list.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}
