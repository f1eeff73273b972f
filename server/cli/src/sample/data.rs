//! `GET /data/<word>` of the sample service: writes `<word>` to each data source the process was
//! given and reads back what is there, so an end-to-end test can see which copies a version
//! touches. The addresses come from the environment, as a service's bindings give them:
//!
//! - `SAMPLE_MYSQL_URL` (`mysql://…/<db>`): inserts into table `notes (body)`, counts its rows;
//! - `SAMPLE_REDIS_URL` (`redis://…/<index>`): `RPUSH notes <word>`, `LLEN notes`;
//! - `SAMPLE_KAFKA_URL` and `SAMPLE_KAFKA_TOPIC`: appends `<word>` to partition 0 of the topic and
//!   counts its records; `SAMPLE_KAFKA_GROUP` is named in the answer.
//!
//! The answer is one line: `data <word>: mysql <db> rows=N; redis <index> notes=N; kafka <topic>
//! records=N group <group>`, with only the sources that are set.

use lane_core::data::{Address, check_mysql_ident};
use lane_data::kafka::Kafka;
use lane_data::mysql::{Mysql, quote};
use lane_data::redis::{Redis, Reply};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Writes and reads `word` through every source set; an error names the source.
pub async fn touch(word: &str) -> Result<String, String> {
    let ok = !word.is_empty()
        && word.len() <= 32
        && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok {
        return Err(format!(
            "`{word}` is not a word (letters, digits and `-`, at most 32)"
        ));
    }
    let mut parts = Vec::new();
    if let Some(url) = var("SAMPLE_MYSQL_URL") {
        let db = Address::parse(&url)
            .map_err(|e| format!("mysql: {e}"))?
            .path;
        check_mysql_ident(&db).map_err(|e| format!("mysql: {e}"))?;
        let m = Mysql::connect(&url)
            .await
            .map_err(|e| format!("mysql: {e}"))?;
        let table = format!("{}.notes", quote(&db));
        let r = async {
            // The word is checked above: letters, digits and `-` only.
            m.execute(&[&format!("INSERT INTO {table} (body) VALUES ('{word}')")])
                .await?;
            m.column(&format!("SELECT COUNT(*) FROM {table}")).await
        }
        .await;
        m.close().await;
        let rows = r.map_err(|e| format!("mysql: {e}"))?;
        parts.push(format!("mysql {db} rows={}", rows.join("")));
    }
    if let Some(url) = var("SAMPLE_REDIS_URL") {
        let index = Address::parse(&url)
            .map_err(|e| format!("redis: {e}"))?
            .path;
        let index = if index.is_empty() { "0".into() } else { index };
        let mut r = Redis::connect(&url)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        r.cmd(&[b"SELECT", index.as_bytes()])
            .await
            .map_err(|e| format!("redis: {e}"))?;
        r.cmd(&[b"RPUSH", b"notes", word.as_bytes()])
            .await
            .map_err(|e| format!("redis: {e}"))?;
        let n = match r.cmd(&[b"LLEN", b"notes"]).await {
            Ok(Reply::Int(n)) => n,
            Ok(other) => return Err(format!("redis: LLEN answered {other:?}")),
            Err(e) => return Err(format!("redis: {e}")),
        };
        parts.push(format!("redis {index} notes={n}"));
    }
    if let (Some(url), Some(topic)) = (var("SAMPLE_KAFKA_URL"), var("SAMPLE_KAFKA_TOPIC")) {
        let k = Kafka::connect(&url)
            .await
            .map_err(|e| format!("kafka: {e}"))?;
        k.produce(&topic, 0, None, word.as_bytes())
            .await
            .map_err(|e| format!("kafka: {e}"))?;
        let records = k
            .read(&topic, 0, 0)
            .await
            .map_err(|e| format!("kafka: {e}"))?;
        let group = var("SAMPLE_KAFKA_GROUP").unwrap_or_else(|| "-".into());
        parts.push(format!(
            "kafka {topic} records={} group {group}",
            records.len()
        ));
    }
    Ok(format!("data {word}: {}", parts.join("; ")))
}
