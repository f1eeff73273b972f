//! `lane baseline sync`: asks the backend to bring baseline to what production runs now
//! (`Backend::baseline_sync`) and prints each followed service's drift.

use lane_api::{Backend, BaselineSync};

use crate::commands::with_progress;

pub async fn run(backend: &dyn Backend, json: bool) -> anyhow::Result<u8> {
    let synced = with_progress(json, async |tx, cancel| {
        backend.baseline_sync(tx, cancel).await
    })
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&synced)?);
    } else {
        print!("{}", table(&synced, now()));
    }
    Ok(0)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One line per service: service, what it follows, drift, production's and baseline's version,
/// how long ago it was last in sync, and why when it is not.
fn table(synced: &[BaselineSync], now: u64) -> String {
    if synced.is_empty() {
        return "no baseline service follows production\n".to_owned();
    }
    let mut rows = vec![[
        "SERVICE".to_owned(),
        "FOLLOWS".to_owned(),
        "DRIFT".to_owned(),
        "PRODUCTION".to_owned(),
        "BASELINE".to_owned(),
        "LAST SYNC".to_owned(),
        "REASON".to_owned(),
    ]];
    for s in synced {
        rows.push([
            s.service.to_string(),
            s.follows.clone(),
            s.drift.as_str().to_owned(),
            s.production.clone().unwrap_or_else(|| "-".into()),
            s.running.clone().unwrap_or_else(|| "-".into()),
            s.last_sync
                .map(|t| format!("{}s ago", now.saturating_sub(t)))
                .unwrap_or_else(|| "never".into()),
            s.reason.clone().unwrap_or_default(),
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lane_api::Drift;

    #[test]
    fn table_lines() {
        let rows = vec![
            BaselineSync {
                service: "shop.cart".parse().unwrap(),
                follows: "namespace prod".into(),
                production: Some("cart:2".into()),
                running: Some("cart:2".into()),
                drift: Drift::InSync,
                reason: None,
                last_sync: Some(90),
            },
            BaselineSync {
                service: "shop.pay".parse().unwrap(),
                follows: "namespace prod".into(),
                production: None,
                running: Some("pay:1".into()),
                drift: Drift::Unknown,
                reason: Some("production has no Deployment pay in namespace prod".into()),
                last_sync: None,
            },
        ];
        assert_eq!(
            table(&rows, 100),
            "SERVICE    FOLLOWS         DRIFT    PRODUCTION  BASELINE  LAST SYNC  REASON\n\
             shop.cart  namespace prod  in_sync  cart:2      cart:2    10s ago\n\
             shop.pay   namespace prod  unknown  -           pay:1     never      production has no Deployment pay in namespace prod\n"
        );
        assert_eq!(table(&[], 0), "no baseline service follows production\n");
    }
}
