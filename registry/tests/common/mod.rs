//! Test harness: a real registry server on 127.0.0.1:0 and a small JSON client.
#![allow(dead_code)]

use fluxo_registry::Registry;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running registry server.
pub struct Server {
    pub url: String,
    shutdown: oneshot::Sender<()>,
    handle: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Opens the registry file at `path` and serves it, writes open, on an ephemeral port.
    pub async fn start(path: &Path) -> Server {
        Self::start_with(path, fluxo_registry::WriteAccess::Open).await
    }

    /// [`Server::start`] with writes allowed as `access` says.
    pub async fn start_with(path: &Path, access: fluxo_registry::WriteAccess) -> Server {
        let registry = Arc::new(Registry::open(path).expect("registry opens"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(fluxo_registry::serve(
            listener,
            registry,
            access,
            async move {
                let _ = rx.await;
            },
        ));
        Server {
            url,
            shutdown: tx,
            handle,
        }
    }

    /// Stops the server and waits until the registry (and its redb file) is released.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        self.handle.await.expect("server task").expect("server io");
    }
}

/// A response: status, content type and body (JSON if it parses, else a JSON string).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
    pub text: String,
}

/// A JSON client bound to a server URL.
pub struct Client {
    pub base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            base: base.to_string(),
            http: reqwest::Client::new(),
            token: None,
        }
    }

    /// A client sending `Authorization: Bearer <token>` on every request.
    pub fn with_token(base: &str, token: &str) -> Client {
        Client {
            token: Some(token.to_string()),
            ..Client::new(base)
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let res = req.send().await.expect("request sent");
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default();
        let text = res.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        Resp {
            status,
            content_type,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.post_raw(path, &body.to_string()).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        let req = self
            .http
            .put(format!("{}{path}", self.base))
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(body.to_string());
        self.send(req).await
    }

    pub async fn post_raw(&self, path: &str, body: &str) -> Resp {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(body.to_string());
        self.send(req).await
    }

    /// Registers `schema` under `subject`, returning the response.
    pub async fn register(&self, subject: &str, schema: &str) -> Resp {
        self.post(
            &format!("/subjects/{subject}/versions"),
            &serde_json::json!({ "schema": schema }),
        )
        .await
    }

    /// Registers and returns the id, panicking with the body on failure.
    pub async fn register_ok(&self, subject: &str, schema: &str) -> u64 {
        let r = self.register(subject, schema).await;
        assert_eq!(r.status, 200, "register failed: {}", r.text);
        r.body["id"].as_u64().expect("id")
    }
}

/// A record schema `t.R` with the given fields JSON.
pub fn record(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"R","namespace":"t","fields":[{fields}]}}"#)
}

/// Starts a server over a fresh temp file; keep the TempDir alive for the test.
pub async fn fresh() -> (tempfile::TempDir, Server, Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("registry.redb")).await;
    let client = Client::new(&server.url);
    (dir, server, client)
}
