//! `nubo ring push RINGFILE`: hands a new ring to every storage node it
//! names (each checks it is newer and from the same cluster, replaces its
//! ring file atomically and swaps it in). Proxies reload from their file.

use anyhow::{bail, Context, Result};
use http::{Method, Request};
use http_body_util::BodyExt;
use service_kit::client::{HttpClient, Timeouts};
use std::path::Path;
use std::time::Duration;

pub fn run(ring_path: &Path) -> Result<()> {
    let bytes =
        std::fs::read(ring_path).with_context(|| format!("reading {}", ring_path.display()))?;
    let ring = ring_tools::ring_file::decode(&bytes)
        .with_context(|| format!("{} is not a valid ring", ring_path.display()))?;
    let nodes = ring.node_addrs();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = HttpClient::new(Timeouts {
        connect: Duration::from_secs(2),
        node: Duration::from_secs(30),
    });
    let mut failed = 0;
    for addr in &nodes {
        let result = rt.block_on(async {
            let req = Request::builder()
                .method(Method::PUT)
                .uri("/ring")
                .header("host", addr.as_str())
                .body(service_kit::http_util::full(bytes.clone()))?;
            let resp = client.send(addr, req).await?;
            let status = resp.status();
            let text =
                String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()).into_owned();
            anyhow::Ok((status, text))
        });
        match result {
            Ok((st, text)) if st.is_success() => println!("{addr}: {}", text.trim()),
            Ok((st, text)) => {
                failed += 1;
                println!("{addr}: refused ({st}): {}", text.trim());
            }
            Err(e) => {
                failed += 1;
                println!("{addr}: unreachable: {e:#}");
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} nodes did not take ring generation {}",
            nodes.len(),
            ring.generation()
        );
    }
    Ok(())
}
