//! Abuse of the registry's HTTP server (issue 16): unauthenticated writes, oversized requests,
//! slow-loris connections. Real server, real sockets.

mod common;

use common::{record, Client, Server};
use fluxo_registry::WriteAccess;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "the-one-good-token";

fn bearer_access() -> WriteAccess {
    WriteAccess::Bearer(Arc::new(|t: &str| t == TOKEN))
}

#[tokio::test]
async fn writes_need_the_bearer_token_reads_stay_open() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("r.redb"), bearer_access()).await;
    let admin = Client::with_token(&server.url, TOKEN);
    let anon = Client::new(&server.url);
    let forger = Client::with_token(&server.url, "guessed");
    let schema = record(r#"[{"name":"a","type":"string"}]"#);
    let subject = "asset-prices-value";
    assert_eq!(anon.register(subject, &schema).await.status, 401);
    assert_eq!(forger.register(subject, &schema).await.status, 401);
    let id = admin.register_ok(subject, &schema).await;

    // Every write refused without the token, with a Confluent-shaped body.
    let writes = [
        anon.delete(&format!("/subjects/{subject}")).await,
        anon.delete(&format!("/subjects/{subject}/versions/1"))
            .await,
        anon.put("/config", &json!({"compatibility": "NONE"})).await,
        anon.put(
            &format!("/config/{subject}"),
            &json!({"compatibility": "NONE"}),
        )
        .await,
        anon.delete("/config").await,
        anon.delete(&format!("/config/{subject}")).await,
        anon.put("/mode", &json!({"mode": "IMPORT"})).await,
        forger.delete(&format!("/subjects/{subject}")).await,
    ];
    for r in &writes {
        assert_eq!(r.status, 401, "{}", r.text);
        assert_eq!(r.body["error_code"], 401, "{}", r.text);
    }
    // Reads, lookups and compatibility tests stay open.
    assert_eq!(anon.get(&format!("/schemas/ids/{id}")).await.status, 200);
    assert_eq!(anon.get("/subjects").await.body, json!([subject]));
    let lookup = anon
        .post(&format!("/subjects/{subject}"), &json!({"schema": schema}))
        .await;
    assert_eq!(lookup.status, 200, "{}", lookup.text);
    let compat = anon
        .post(
            &format!("/compatibility/subjects/{subject}/versions/latest"),
            &json!({"schema": schema}),
        )
        .await;
    assert_eq!(compat.status, 200, "{}", compat.text);
    assert_eq!(anon.get("/config").await.status, 200);

    // The subject survived every anonymous attempt; with the token the delete works.
    assert_eq!(
        anon.get(&format!("/subjects/{subject}/versions"))
            .await
            .body,
        json!([1])
    );
    let deleted = admin.delete(&format!("/subjects/{subject}")).await;
    assert_eq!(
        (deleted.status, deleted.body.clone()),
        (200, json!([1])),
        "{}",
        deleted.text
    );
    assert_eq!(anon.get("/subjects").await.body, json!([]));
    server.stop().await;

    // Read-only: nobody writes.
    let ro = Server::start_with(&dir.path().join("ro.redb"), WriteAccess::ReadOnly).await;
    let r = Client::with_token(&ro.url, TOKEN)
        .register(subject, &schema)
        .await;
    assert_eq!(r.status, 401);
    ro.stop().await;
}

/// Sends raw bytes and returns the status code of the answer (0 if the connection closed).
async fn raw_status(addr: &str, request: &[u8]) -> u16 {
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    // The server may answer and close before reading everything: write aside, ignore errors.
    let request = request.to_vec();
    let writer = tokio::spawn(async move {
        let _ = w.write_all(&request).await;
        w
    });
    let s = &mut r;
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    writer.abort();
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn oversized_heads_uris_and_bodies_are_refused_early() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("r.redb")).await;
    let addr = server.url.trim_start_matches("http://").to_string();
    let limits = fluxo_registry::Limits::default();

    let long_uri = format!("/subjects/{}", "a".repeat(limits.max_uri_bytes + 1));
    let req = format!("GET {long_uri} HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(raw_status(&addr, req.as_bytes()).await, 414);

    let big_header = "x".repeat(limits.max_header_bytes + 1);
    let req = format!("GET /subjects HTTP/1.1\r\nhost: x\r\nx-pad: {big_header}\r\n\r\n");
    assert_eq!(raw_status(&addr, req.as_bytes()).await, 431);

    // A declared body over the limit is refused before it is sent.
    let req = format!(
        "POST /subjects/s/versions HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        limits.max_body_bytes + 1
    );
    assert_eq!(raw_status(&addr, req.as_bytes()).await, 413);
    // A chunked body (no Content-Length) is cut where it passes the limit.
    let mut req =
        b"POST /subjects/s/versions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    let size = limits.max_body_bytes + 10;
    req.extend_from_slice(format!("{size:x}\r\n").as_bytes());
    req.extend(std::iter::repeat_n(b'x', size));
    req.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(raw_status(&addr, &req).await, 413);
    let client = Client::new(&server.url);
    // Still serving normally.
    assert_eq!(client.get("/subjects").await.status, 200);
    server.stop().await;
}

/// 300 connections that send half a request head and stall: the server closes every one after
/// its header-read timeout (10 s), and answers a normal request meanwhile.
#[tokio::test]
async fn slow_loris_connections_are_closed_and_do_not_starve_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("r.redb")).await;
    let addr = server.url.trim_start_matches("http://").to_string();
    let started = Instant::now();
    let mut loris = Vec::new();
    for i in 0..300 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        // Half the connections send a partial head, the other half nothing at all.
        if i % 2 == 0 {
            s.write_all(b"GET /subjects HTTP/1.1\r\nhost: x\r\nx-slow: ")
                .await
                .unwrap();
        }
        loris.push(s);
    }
    // Served while the 300 are held.
    let r = Client::new(&server.url).get("/subjects").await;
    assert_eq!(r.status, 200);
    // Each stalled connection is closed by the server: read returns EOF (or a 408 first).
    let mut closed = 0;
    for mut s in loris {
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed += 1;
                    break;
                }
                Ok(Ok(_)) => continue,
                Err(_) => panic!("a slow-loris connection still open after 30 s"),
            }
        }
    }
    assert_eq!(closed, 300);
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(9), "closed too early: {took:?}");
    assert_eq!(Client::new(&server.url).get("/subjects").await.status, 200);
    server.stop().await;
}
