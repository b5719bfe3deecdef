//! `nubo ring ...`: the operator command line, a thin shell over the builder and ring.
//!
//! Every command either does all it says or exits non-zero with one line
//! saying why; files are replaced atomically, never left half-written.

use crate::builder::{now_minutes, NewDevice, RebalanceOptions, RingBuilder};
use crate::device::Device;
use crate::placement::HashSecret;
use crate::ring::Ring;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum RingCommand {
    /// Create an empty ring builder.
    Create(CreateArgs),
    /// Add a device; prints its id.
    Add(AddArgs),
    /// Mark a device for removal; the next rebalance moves its partitions off.
    Remove { builder: PathBuf, id: u32 },
    /// Change a device's weight (0 drains it at the next rebalance).
    SetWeight {
        builder: PathBuf,
        id: u32,
        #[arg(allow_negative_numbers = true)]
        weight: f64,
    },
    /// Reassign partitions and write the ring file services load.
    Rebalance {
        builder: PathBuf,
        #[arg(long)]
        ring: PathBuf,
        /// Chooses among equally good moves; the same seed gives the same ring.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        json: bool,
    },
    /// Show the builder: parameters, balance, dispersion, and every device.
    Show {
        builder: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check a ring file: exit 0 when sound, non-zero with the reason when not.
    Validate { ring: PathBuf },
    /// Where a name lives: its partition, primary devices and handoffs.
    Lookup {
        ring: PathBuf,
        account: String,
        container: Option<String>,
        object: Option<String>,
        /// How many handoff devices to list (default: as many as there are replicas).
        #[arg(long)]
        handoffs: Option<usize>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    builder: PathBuf,
    #[arg(long, allow_negative_numbers = true)]
    part_power: i64,
    #[arg(long, allow_negative_numbers = true)]
    replicas: i64,
    #[arg(long)]
    min_part_hours: u32,
    /// The cluster's hash secret (prefix part); random when neither part is given.
    #[arg(long, requires = "hash_path_suffix")]
    hash_path_prefix: Option<String>,
    /// The cluster's hash secret (suffix part).
    #[arg(long, requires = "hash_path_prefix")]
    hash_path_suffix: Option<String>,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    builder: PathBuf,
    #[arg(long)]
    region: u32,
    #[arg(long)]
    zone: u32,
    #[arg(long)]
    ip: String,
    #[arg(long)]
    port: u16,
    #[arg(long)]
    device: String,
    #[arg(long, allow_negative_numbers = true)]
    weight: f64,
    #[arg(long, default_value = "")]
    meta: String,
}

pub fn run(cmd: RingCommand) -> Result<()> {
    match cmd {
        RingCommand::Create(a) => create(a),
        RingCommand::Add(a) => {
            let mut b = load_builder(&a.builder)?;
            let id = b.add_device(NewDevice {
                region: a.region,
                zone: a.zone,
                ip: a.ip,
                port: a.port,
                device: a.device,
                weight: a.weight,
                meta: a.meta,
            })?;
            save_builder(&b, &a.builder)?;
            println!("{id}");
            Ok(())
        }
        RingCommand::Remove { builder, id } => {
            let mut b = load_builder(&builder)?;
            b.remove_device(id)?;
            save_builder(&b, &builder)?;
            println!("device {id} marked for removal; rebalance to move its partitions");
            Ok(())
        }
        RingCommand::SetWeight {
            builder,
            id,
            weight,
        } => {
            let mut b = load_builder(&builder)?;
            b.set_weight(id, weight)?;
            save_builder(&b, &builder)?;
            println!("device {id} weight set to {weight}");
            Ok(())
        }
        RingCommand::Rebalance {
            builder,
            ring,
            seed,
            json,
        } => rebalance(&builder, &ring, seed, json),
        RingCommand::Show { builder, json } => show(&builder, json),
        RingCommand::Validate { ring } => {
            let r = load_ring(&ring)?;
            println!(
                "ok: {} partitions, {} replicas, {} devices, generation {}, checksum {}",
                r.partition_count(),
                r.replicas(),
                r.devices().len(),
                r.generation(),
                r.checksum_hex()
            );
            Ok(())
        }
        RingCommand::Lookup {
            ring,
            account,
            container,
            object,
            handoffs,
            json,
        } => {
            let r = load_ring(&ring)?;
            let mut components = vec![account.as_str()];
            components.extend(container.as_deref());
            components.extend(object.as_deref());
            lookup(&r, &components, handoffs.unwrap_or(r.replicas()), json);
            Ok(())
        }
    }
}

fn load_builder(path: &Path) -> Result<RingBuilder> {
    RingBuilder::load(path).with_context(|| format!("cannot load builder {}", path.display()))
}

fn save_builder(b: &RingBuilder, path: &Path) -> Result<()> {
    b.save(path)
        .with_context(|| format!("cannot save builder {}", path.display()))
}

fn load_ring(path: &Path) -> Result<Ring> {
    Ring::load(path).with_context(|| format!("invalid ring {}", path.display()))
}

fn create(a: CreateArgs) -> Result<()> {
    if a.builder.exists() {
        bail!(
            "{} already exists; refusing to overwrite a builder",
            a.builder.display()
        );
    }
    let part_power = u32::try_from(a.part_power).unwrap_or(0);
    let replicas = u32::try_from(a.replicas).unwrap_or(0);
    if !(1..=32).contains(&part_power) {
        bail!("part power {} is out of range (1..=32)", a.part_power);
    }
    if replicas == 0 || replicas > 255 {
        bail!("replica count {} is out of range (1..=255)", a.replicas);
    }
    let secret = match (a.hash_path_prefix, a.hash_path_suffix) {
        (Some(p), Some(s)) => HashSecret::new(p, s)?,
        _ => HashSecret::generate(),
    };
    let b = RingBuilder::new(part_power, replicas, a.min_part_hours, secret)?;
    save_builder(&b, &a.builder)?;
    println!(
        "created {}: part power {part_power} ({} partitions), {replicas} replicas, min_part_hours {}",
        a.builder.display(),
        b.partition_count(),
        a.min_part_hours
    );
    Ok(())
}

fn rebalance(builder: &Path, ring_path: &Path, seed: u64, json: bool) -> Result<()> {
    let mut b = load_builder(builder)?;
    let report = b.rebalance(RebalanceOptions {
        seed,
        now_minutes: now_minutes(),
    })?;
    let ring = b.build_ring()?;
    ring.save(ring_path)
        .with_context(|| format!("cannot write ring {}", ring_path.display()))?;
    save_builder(&b, builder)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let total = (b.partition_count() * b.replicas()) as f64;
        println!(
            "reassigned {} partition-replicas ({:.2}%); balance {:.2}, dispersion {:.2}",
            report.moved,
            report.moved as f64 * 100.0 / total,
            report.balance,
            report.dispersion
        );
        if report.held_by_min_part_hours > 0 && report.balance > 1.0 {
            println!(
                "note: {} partitions moved within the last {} hour(s) (min_part_hours) and were held; rebalance again later",
                report.held_by_min_part_hours,
                b.min_part_hours()
            );
        }
        println!(
            "wrote {} (generation {}, checksum {})",
            ring_path.display(),
            ring.generation(),
            ring.checksum_hex()
        );
    }
    Ok(())
}

fn show(path: &Path, json: bool) -> Result<()> {
    let b = load_builder(path)?;
    let devices = b.device_reports();
    let (balance, dispersion) = (b.balance(), b.dispersion().unwrap_or(0.0));
    if json {
        let out = json!({
            "part_power": b.part_power(),
            "replicas": b.replicas(),
            "min_part_hours": b.min_part_hours(),
            "generation": b.generation(),
            "balance": balance,
            "dispersion": dispersion,
            "devices": devices,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{}: part power {} ({} partitions), {} replicas, min_part_hours {}, generation {}",
        path.display(),
        b.part_power(),
        b.partition_count(),
        b.replicas(),
        b.min_part_hours(),
        b.generation()
    );
    println!(
        "{} devices; balance {balance:.2}, dispersion {dispersion:.2}",
        devices.len()
    );
    println!(
        "{:>5} {:>6} {:>5} {:<22} {:<12} {:>10} {:>8} {:>8}  meta",
        "id", "region", "zone", "address", "device", "weight", "parts", "balance"
    );
    for d in &devices {
        println!(
            "{:>5} {:>6} {:>5} {:<22} {:<12} {:>10.2} {:>8} {:>8.2}  {}{}",
            d.device.id,
            d.device.region,
            d.device.zone,
            d.device.node_addr(),
            d.device.device,
            d.device.weight,
            d.parts,
            d.balance,
            if d.removing { "(removing) " } else { "" },
            d.device.meta
        );
    }
    Ok(())
}

fn lookup(ring: &Ring, components: &[&str], handoffs: usize, json: bool) {
    let (hash, part) = ring.locate(components);
    let primaries: Vec<&Device> = ring.primaries(part).collect();
    let more: Vec<&Device> = ring.handoffs(part).take(handoffs).collect();
    if json {
        let out = json!({
            "partition": part,
            "hash": hash.to_hex(),
            "primaries": primaries,
            "handoffs": more,
        });
        println!("{out}");
        return;
    }
    println!("name       {}", components.join("/"));
    println!("partition  {part}");
    println!("hash       {hash}");
    for (kind, devs) in [("primary", &primaries), ("handoff", &more)] {
        for d in devs.iter() {
            println!(
                "{kind:<10} device {:>5}  r{}z{}  {}/{}",
                d.id,
                d.region,
                d.zone,
                d.node_addr(),
                d.device
            );
        }
    }
}
