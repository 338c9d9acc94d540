//! Kafka client settings and topic administration.
//!
//! Every client starts from `[kafka]` of topology.toml: `bootstrap_servers` plus the
//! pass-through `[kafka.client]` table (SASL, SSL, rack, compression…), where a value written
//! `env:NAME` is read from the environment so secrets stay out of the file. Values of secret
//! settings are never logged ([`crate::config::is_secret_setting`]); one written in clear draws a
//! warning naming the setting only.

use crate::config::{TopicConfig, Topology};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use std::time::Duration;

/// A client configuration for the brokers of `topology`.
///
/// # Errors
/// When a `env:NAME` value names a variable that is not set.
pub fn client_config(topology: &Topology) -> anyhow::Result<ClientConfig> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &topology.kafka.bootstrap_servers);
    cfg.set("client.id", "fluxo");
    for (k, v) in &topology.kafka.client {
        let value = match v.strip_prefix("env:") {
            Some(var) => std::env::var(var).map_err(|_| {
                anyhow::anyhow!("kafka.client.{k} refers to ${var}, which is not set")
            })?,
            None => {
                if crate::config::is_secret_setting(k) {
                    static WARNED: std::sync::Once = std::sync::Once::new();
                    WARNED.call_once(|| {
                        tracing::warn!(setting = %k, "a secret is written in clear in the topology; prefer `env:NAME`");
                    });
                }
                v.clone()
            }
        };
        cfg.set(k, value);
    }
    Ok(cfg)
}

/// Create every topic `topology` needs (declared ones and `.dlq`s); existing topics are left
/// as they are. Returns the names created.
///
/// # Errors
/// When the brokers cannot be reached or refuse a creation for another reason than "exists".
pub async fn create_topics(topology: &Topology) -> anyhow::Result<Vec<String>> {
    let admin: AdminClient<DefaultClientContext> = client_config(topology)?.create()?;
    let topics = topology.all_topics();
    let configs: Vec<(String, Vec<(&str, String)>)> = topics
        .iter()
        .map(|(name, t)| (name.clone(), topic_settings(t)))
        .collect();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .zip(&configs)
        .map(|((name, t), (_, settings))| {
            let mut nt = NewTopic::new(
                name,
                t.partitions,
                // -1: the broker's default.replication.factor (KIP-464).
                TopicReplication::Fixed(t.replication_factor.unwrap_or(-1)),
            );
            for (k, v) in settings {
                nt = nt.set(k, v);
            }
            nt
        })
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(60)));
    let mut created = Vec::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        // Creation is idempotent ("already exists" is fine), so a timed-out attempt is retried.
        let results = match admin.create_topics(&new, &opts).await {
            Ok(r) => r,
            Err(e) if attempt < 3 => {
                tracing::warn!(error = %e, attempt, "creating topics timed out; retrying");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut retry = false;
        for r in results {
            match r {
                Ok(name) => created.push(name),
                Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, rdkafka::types::RDKafkaErrorCode::RequestTimedOut)) if attempt < 3 => {
                    retry = true
                }
                Err((name, code)) => anyhow::bail!("cannot create topic {name}: {code}"),
            }
        }
        if !retry {
            break;
        }
    }
    // Kafka answers the creation before every partition has a leader; clients that look a new
    // topic up meanwhile get NotLeaderForPartition. Wait until they would not.
    let names: Vec<String> = topics.iter().map(|(n, _)| n.clone()).collect();
    let config = client_config(topology)?;
    tokio::task::spawn_blocking(move || wait_for_leaders(&config, &names, Duration::from_secs(30)))
        .await??;
    Ok(created)
}

/// Wait until every partition of `topics` has a leader, up to `timeout`.
fn wait_for_leaders(
    config: &ClientConfig,
    topics: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = config.create()?;
    let deadline = std::time::Instant::now() + timeout;
    for topic in topics {
        loop {
            let ready = match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
                Ok(md) => md.topics().iter().all(|t| {
                    t.error().is_none()
                        && !t.partitions().is_empty()
                        && t.partitions()
                            .iter()
                            .all(|p| p.error().is_none() && p.leader() >= 0)
                }),
                Err(_) => false,
            };
            if ready {
                break;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "topic {topic} has partitions without a leader after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

fn topic_settings(t: &TopicConfig) -> Vec<(&'static str, String)> {
    let mut s = vec![("cleanup.policy", t.cleanup_policy.as_str().to_string())];
    if let Some(r) = t.retention {
        s.push(("retention.ms", r.millis().to_string()));
    }
    s
}

/// Wait until the brokers answer a metadata request, up to `timeout`.
///
/// # Errors
/// When they still do not answer after `timeout`.
pub fn wait_for_brokers(topology: &Topology, timeout: Duration) -> anyhow::Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = client_config(topology)?.create()?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match consumer.fetch_metadata(None, Duration::from_secs(2)) {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => {
                anyhow::bail!(
                    "brokers at {} do not answer: {e}",
                    topology.kafka.bootstrap_servers
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(client: &[(&str, &str)]) -> Topology {
        let mut text =
            String::from("[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\n[kafka.client]\n");
        for (k, v) in client {
            text.push_str(&format!("\"{k}\" = \"{v}\"\n"));
        }
        Topology::parse(&text, "t.toml", &crate::config::Overrides::default()).unwrap()
    }

    #[test]
    fn production_settings_pass_through_and_the_client_accepts_them() {
        std::env::set_var("FLUXO_TEST_SCRAM_PASSWORD", "s3cret");
        let t = topology(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "fluxo"),
            ("sasl.password", "env:FLUXO_TEST_SCRAM_PASSWORD"),
            ("client.rack", "sa-east-1a"),
            ("compression.type", "lz4"),
        ]);
        let cfg = client_config(&t).unwrap();
        assert_eq!(cfg.get("sasl.password"), Some("s3cret"));
        assert_eq!(cfg.get("client.rack"), Some("sa-east-1a"));
        assert!(!format!("{cfg:?}").contains("s3cret"));
        // Creating a client validates every setting against the compiled librdkafka.
        let producer: rdkafka::producer::BaseProducer = cfg.create().unwrap();
        drop(producer);
    }

    #[test]
    fn a_missing_secret_variable_is_named() {
        let t = topology(&[("sasl.password", "env:FLUXO_TEST_UNSET_PASSWORD")]);
        let e = client_config(&t).unwrap_err().to_string();
        assert!(
            e.contains("kafka.client.sasl.password refers to $FLUXO_TEST_UNSET_PASSWORD"),
            "{e}"
        );
    }
}
