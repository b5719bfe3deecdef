//! Listing rows on their way to container servers: one request per
//! container device carries every row waiting for it.
//!
//! Two senders use it. The proxy delivers a write's row to every container
//! replica before it acknowledges the write ([`RowBatches::deliver`]), so
//! that a listing right after the write shows it (as Swift's object servers
//! update their containers during a PUT, but once per container replica
//! rather than once per object replica), applied there without a WAL sync
//! of their own. Each node's updater delivers the rows its object writes
//! queued with their records again, durably ([`send_rows`] with `durable`),
//! and only then forgets them. A container device that is down or stalled
//! costs a write at most [`SYNC_DELIVERY`], not its success.

use crate::container_server::BatchedRow;
use crate::records::Target;
use http::{Method, Request};
use service_kit::client::{HttpClient, Timeouts};
use service_kit::http_util::{encode, full};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a write waits for its listing rows before it is acknowledged
/// anyway (the nodes keep them queued): a container replica that is down or
/// stalled costs writes this much, not their success.
pub const SYNC_DELIVERY: Duration = Duration::from_secs(2);

/// Rows waiting to travel to one container device, and whether a sender
/// is on its way there.
#[derive(Default)]
struct Batch {
    rows: Vec<(BatchedRow, oneshot::Sender<bool>)>,
    sending: bool,
}

/// Group delivery of the listing rows of writes in flight.
pub struct RowBatches {
    client: HttpClient,
    by_target: Mutex<HashMap<(String, String), Batch>>,
}

impl RowBatches {
    pub fn new(timeouts: Timeouts) -> RowBatches {
        RowBatches {
            client: HttpClient::new(timeouts),
            by_target: Mutex::new(HashMap::new()),
        }
    }

    /// Delivers `rows` to their container devices with the rows of
    /// concurrent writes, to be listed at once; how many were acknowledged
    /// in time.
    pub async fn deliver(self: &Arc<Self>, rows: Vec<(Target, BatchedRow)>) -> usize {
        let mut waits = Vec::with_capacity(rows.len());
        for (target, row) in rows {
            let (tx, rx) = oneshot::channel();
            let key = (target.addr, target.device);
            let start = {
                let mut all = self.by_target.lock().unwrap_or_else(|p| p.into_inner());
                let batch = all.entry(key.clone()).or_default();
                batch.rows.push((row, tx));
                !std::mem::replace(&mut batch.sending, true)
            };
            if start {
                let me = self.clone();
                tokio::spawn(async move { me.send_all(key).await });
            }
            waits.push(rx);
        }
        let mut delivered = 0;
        for rx in waits {
            if let Ok(Ok(true)) = tokio::time::timeout(SYNC_DELIVERY, rx).await {
                delivered += 1;
            }
        }
        delivered
    }

    /// Sends what is waiting for one device, batch after batch, until
    /// nothing is.
    async fn send_all(&self, (addr, device): (String, String)) {
        let key = (addr, device);
        loop {
            let batch = {
                let mut all = self.by_target.lock().unwrap_or_else(|p| p.into_inner());
                let Some(b) = all.get_mut(&key) else {
                    return;
                };
                if b.rows.is_empty() {
                    all.remove(&key);
                    return;
                }
                std::mem::take(&mut b.rows)
            };
            let (rows, waiters): (Vec<BatchedRow>, Vec<oneshot::Sender<bool>>) =
                batch.into_iter().unzip();
            let ok = tokio::time::timeout(
                SYNC_DELIVERY,
                send_rows(&self.client, &key.0, &key.1, &rows, false),
            )
            .await
            .unwrap_or(false);
            for w in waiters {
                let _ = w.send(ok);
            }
        }
    }
}

/// Sends rows to one container device (`PUT /rows/{device}`); `durable`:
/// the device syncs them before it answers, otherwise they are only made
/// visible there.
pub async fn send_rows(
    client: &HttpClient,
    addr: &str,
    device: &str,
    rows: &[BatchedRow],
    durable: bool,
) -> bool {
    let visible_only = if durable { "" } else { "?durable=no" };
    let req = Request::builder()
        .method(Method::PUT)
        .uri(format!("/rows/{}{visible_only}", encode(device)))
        .header("host", addr)
        .body(full(serde_json::to_vec(rows).expect("rows serialize")))
        .expect("valid request");
    match client.send(addr, req).await {
        Ok(resp) => {
            let status = resp.status();
            // Drain so the connection can be reused.
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            if !status.is_success() {
                tracing::warn!(target = %addr, status = %status, "listing rows refused");
            }
            status.is_success()
        }
        Err(e) => {
            tracing::debug!(error = %e, "listing rows not delivered yet");
            false
        }
    }
}
