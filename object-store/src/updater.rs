//! Delivers the listing updates a node owes others: object rows to container
//! servers at once, container stats to account servers at most once a
//! second per container (newer stats replace queued ones, so a busy
//! container costs its account one update a second, not one per object).
//! An update stays queued, on disk, until its target acknowledges it.

use crate::http_util::{encode, full};
use crate::records::{PendingUpdate, Update};
use crate::storage_node::NodeState;
use futures_util::StreamExt;
use http::{Method, Request};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH: usize = 512;
const CONCURRENCY: usize = 16;
const STATS_INTERVAL: Duration = Duration::from_secs(1);

pub async fn run(state: Arc<NodeState>) {
    let mut last_stats = Instant::now() - STATS_INTERVAL;
    loop {
        let send_stats = last_stats.elapsed() >= STATS_INTERVAL;
        if send_stats {
            last_stats = Instant::now();
        }
        let mut failed = false;
        let mut more = false;
        for device in state.devices() {
            let dev = device.clone();
            let queued = match tokio::task::spawn_blocking(move || dev.db.queued(BATCH)).await {
                Ok(Ok(q)) => q,
                _ => continue,
            };
            more |= queued.len() == BATCH;
            let due: Vec<_> = queued
                .into_iter()
                .filter(|(_, u)| send_stats || u.immediate)
                .collect();
            let results: Vec<(Vec<u8>, PendingUpdate, bool)> = futures_util::stream::iter(due)
                .map(|(key, update)| {
                    let state = state.clone();
                    async move {
                        let ok = deliver(&state, &update).await;
                        (key, update, ok)
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            let delivered: Vec<_> = results
                .into_iter()
                .filter_map(|(k, u, ok)| {
                    failed |= !ok;
                    ok.then_some((k, u))
                })
                .collect();
            let dev = device.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for (k, u) in delivered {
                    let _ = dev.db.dequeue(&k, &u);
                }
            })
            .await;
        }
        if more && !failed {
            continue;
        }
        // Wait for new work; retry failures and send stats once a second.
        let _ = tokio::time::timeout(STATS_INTERVAL, state.updates_queued.notified()).await;
    }
}

async fn deliver(state: &NodeState, p: &PendingUpdate) -> bool {
    let (path, body) = match &p.update {
        Update::ObjectRow {
            account,
            container,
            object,
            row,
        } => (
            format!(
                "/cont/{}/{}/{}/{}/{}",
                encode(&p.target.device),
                p.target.partition,
                encode(account),
                encode(container),
                encode(object)
            ),
            serde_json::to_vec(row),
        ),
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
            let ok = resp.status().is_success();
            // Drain so the connection can be reused.
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            if !ok {
                tracing::debug!(target = %p.target.addr, "listing update refused");
            }
            ok
        }
        Err(e) => {
            tracing::debug!(error = %e, "listing update not delivered yet");
            false
        }
    }
}
