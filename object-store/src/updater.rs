//! Delivers the listing updates a node owes others: object rows to container
//! servers at once, container stats to account servers at most once a
//! second per container (newer stats replace queued ones, so a busy
//! container costs its account one update a second, not one per object).
//! An update stays queued, on disk, until its target acknowledges it.
//!
//! The proxy delivers a write's rows before it acknowledges the write, so
//! that a listing right after it shows it, but without a WAL sync on the
//! container device ([`crate::listing_rows`]): the rows stay queued here
//! (durably, with the object) until the loop below has delivered them again
//! with a sync, batched with many others.

use crate::container_server::BatchedRow;
use crate::device_db::DeviceDb;
use crate::listing_rows::send_rows;
use crate::records::{ObjectRow, PendingUpdate, Update};
use crate::storage_node::NodeState;
use futures_util::StreamExt;
use http::{Method, Request};
use service_kit::http_util::{encode, full};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH: usize = 512;

/// A queued update with its queue key.
type Queued = (Vec<u8>, PendingUpdate);
/// Queued updates sent in one request.
type Job = Vec<Queued>;
const CONCURRENCY: usize = 16;
const STATS_INTERVAL: Duration = Duration::from_secs(1);

pub async fn run(state: Arc<NodeState>) {
    let mut last_stats = Instant::now() - STATS_INTERVAL;
    // Per device, where the owed rows still to deliver begin.
    let mut rows_from: HashMap<String, Vec<u8>> = HashMap::new();
    loop {
        let send_stats = last_stats.elapsed() >= STATS_INTERVAL;
        if send_stats {
            last_stats = Instant::now();
        }
        let mut failed = false;
        let mut more = false;
        for device in state.devices() {
            let dev = device.clone();
            let from = rows_from
                .get(&device.name)
                .cloned()
                .unwrap_or_else(DeviceDb::rows_start);
            let start = from.clone();
            let looked = tokio::task::spawn_blocking(move || {
                let floor = dev.db.rows_floor();
                dev.db.queued(&start, BATCH).map(|q| (floor, q))
            })
            .await;
            let (floor, queued) = match looked {
                Ok(Ok(q)) => q,
                _ => continue,
            };
            more |= queued.len() == BATCH;
            // Rows not delivered below are found again from here next time.
            let read_to = queued
                .iter()
                .rev()
                .find(|(k, _)| DeviceDb::is_owed_row(k))
                .map_or(from, |(k, _)| DeviceDb::after(k));
            let due: Vec<_> = queued
                .into_iter()
                .filter(|(_, u)| send_stats || u.immediate)
                .collect();
            // Listing rows for one device travel together; stats one by one.
            let mut jobs: Vec<Job> = Vec::new();
            let mut by_target: std::collections::HashMap<(String, String), usize> =
                Default::default();
            for (key, u) in due {
                match &u.update {
                    Update::ObjectRow { .. } => {
                        let k = (u.target.addr.clone(), u.target.device.clone());
                        let i = *by_target.entry(k).or_insert_with(|| {
                            jobs.push(Vec::new());
                            jobs.len() - 1
                        });
                        jobs[i].push((key, u));
                    }
                    Update::ContainerRow { .. } => jobs.push(vec![(key, u)]),
                }
            }
            let results: Vec<(Job, bool)> = futures_util::stream::iter(jobs)
                .map(|job| {
                    let state = state.clone();
                    async move {
                        let ok = deliver(&state, &job).await;
                        (job, ok)
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            let mut delivered = Vec::new();
            let mut next_from = floor.min(read_to);
            for (job, ok) in results {
                failed |= !ok;
                if ok {
                    delivered.extend(job);
                } else if let Some((k, _)) = job.iter().find(|(k, _)| DeviceDb::is_owed_row(k)) {
                    next_from = next_from.min(k.clone());
                }
            }
            rows_from.insert(device.name.clone(), next_from);
            let dev = device.clone();
            let _ = tokio::task::spawn_blocking(move || dev.db.dequeue_all(&delivered)).await;
        }
        if more && !failed {
            continue;
        }
        // Wait for new work; retry failures and send stats once a second.
        let _ = tokio::time::timeout(STATS_INTERVAL, state.updates_queued.notified()).await;
    }
}

/// Delivers updates now, each on its own and all at once, for a change
/// that should not be acknowledged before its targets know of it (a
/// container created or deleted, in its account's listing). They stay
/// queued: the loop above delivers them again, and retries any that
/// failed here.
pub async fn deliver_now(state: &NodeState, updates: &[PendingUpdate]) {
    let jobs = updates.iter().map(|u| {
        let job = vec![(Vec::new(), u.clone())];
        async move { deliver(state, &job).await }
    });
    futures_util::future::join_all(jobs).await;
}

/// Sends one job: listing rows for one container device, durably, or one
/// container's stats to an account server.
async fn deliver(state: &NodeState, job: &[Queued]) -> bool {
    let p = &job[0].1;
    let (path, body) = match &p.update {
        Update::ObjectRow { .. } => {
            let mut rows: Vec<BatchedRow> = Vec::with_capacity(job.len());
            for (_, u) in job {
                let Update::ObjectRow {
                    account,
                    container,
                    object,
                    row,
                    link,
                } = &u.update
                else {
                    continue;
                };
                let batched = |container: &str, object: &str, row: &ObjectRow| BatchedRow {
                    partition: u.target.partition,
                    account: account.clone(),
                    container: container.to_string(),
                    object: object.to_string(),
                    row: row.clone(),
                };
                rows.push(batched(container, object, row));
                if let Some(l) = link {
                    rows.push(batched(&l.container, &l.object, &l.row));
                }
            }
            return send_rows(&state.client, &p.target.addr, &p.target.device, &rows, true).await;
        }
        Update::ContainerRow {
            account,
            container,
            row,
        } => (
            format!(
                "/acct/{}/{}/{}/{}",
                encode(&p.target.device),
                p.target.partition,
                encode(account),
                encode(container)
            ),
            serde_json::to_vec(row),
        ),
    };
    let req = Request::builder()
        .method(Method::PUT)
        .uri(path)
        .header("host", &p.target.addr)
        .body(full(body.expect("rows serialize")))
        .expect("valid request");
    match state.client.send(&p.target.addr, req).await {
        Ok(resp) => {
            let status = resp.status();
            let ok = status.is_success();
            // Drain so the connection can be reused.
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            if !ok {
                tracing::warn!(target = %p.target.addr, status = %status, "listing update refused");
            }
            ok
        }
        Err(e) => {
            tracing::debug!(error = %e, "listing update not delivered yet");
            false
        }
    }
}
