//! `zib webhooks ...`: manage webhook endpoints and look at deliveries through the
//! tenant API. Listings print columns (or `--json`); changes print one JSON line.

use anyhow::Result;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use crate::tenant_api::Api;

#[derive(Args, Debug)]
pub struct WebhooksArgs {
    #[command(subcommand)]
    pub command: WebhooksCommand,
}

#[derive(Subcommand, Debug)]
pub enum WebhooksCommand {
    /// List webhook endpoints.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Create an endpoint; prints it with its signing secret (shown only now).
    Create {
        /// Where events are POSTed (http or https, a public address).
        url: String,
        /// Comma-separated event types (e.g. file.ready,file.deleted); default all.
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        #[arg(long)]
        description: Option<String>,
        /// Payload vocabulary: zib (default), lifecycle (video.* envelopes) or media
        /// (flat bodies); --events then names that format's types.
        #[arg(long)]
        format: Option<String>,
    },
    /// Delete an endpoint.
    Delete { id: String },
    /// Send a `webhook.test` event to an endpoint.
    Test { id: String },
    /// Recent deliveries to an endpoint.
    Deliveries {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Recent events (optionally of one file).
    Events {
        #[arg(long)]
        file_id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Every attempt at delivering an event.
    Attempts {
        event_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Send an event again to its targets.
    Redeliver { event_id: String },
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_rows(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let parts: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", parts.join("  "));
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

fn list_of<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Prints the answer's `key` list: as the server sent it with `--json`, else as a
/// table with one column a `(header, field)` pair, each cell the field as text.
fn print_list(v: &Value, json: bool, key: &str, columns: &[(&str, &str)]) {
    if json {
        println!("{v}");
        return;
    }
    let headers: Vec<&str> = columns.iter().map(|(header, _)| *header).collect();
    let rows = list_of(v, key)
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|(_, field)| text(&item[*field]))
                .collect()
        })
        .collect();
    print_rows(&headers, rows);
}

pub async fn run(args: WebhooksArgs) -> Result<()> {
    let api = Api::from_env()?;
    let endpoints = ["v1", "api", "webhooks", "endpoints"];
    match args.command {
        WebhooksCommand::List { json } => {
            let v = api.call(Method::GET, &endpoints, None).await?;
            if json {
                println!("{v}");
                return Ok(());
            }
            let rows = list_of(&v, "endpoints")
                .iter()
                .map(|e| {
                    vec![
                        text(&e["id"]),
                        text(&e["enabled"]),
                        text(&e["format"]),
                        e["event_types"]
                            .as_array()
                            .map(|t| t.iter().map(text).collect::<Vec<_>>().join(","))
                            .unwrap_or_else(|| "*".into()),
                        text(&e["url"]),
                    ]
                })
                .collect();
            print_rows(&["ID", "ENABLED", "FORMAT", "EVENTS", "URL"], rows);
        }
        WebhooksCommand::Create {
            url,
            events,
            description,
            format,
        } => {
            let mut body = json!({"url": url});
            if let Some(f) = format {
                body["format"] = json!(f);
            }
            if let Some(e) = events {
                body["event_types"] = json!(e);
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            let v = api.call(Method::POST, &endpoints, Some(body)).await?;
            println!("{v}");
            eprintln!("The signing secret is shown only now: store it safely.");
        }
        WebhooksCommand::Delete { id } => {
            let v = api
                .call(Method::DELETE, &[&endpoints[..], &[&id]].concat(), None)
                .await?;
            println!("{v}");
        }
        WebhooksCommand::Test { id } => {
            let v = api
                .call(
                    Method::POST,
                    &[&endpoints[..], &[&id, "test"]].concat(),
                    None,
                )
                .await?;
            println!("{v}");
        }
        WebhooksCommand::Deliveries { id, json } => {
            let v = api
                .call(
                    Method::GET,
                    &[&endpoints[..], &[&id, "deliveries"]].concat(),
                    None,
                )
                .await?;
            print_list(
                &v,
                json,
                "deliveries",
                &[
                    ("EVENT_ID", "event_id"),
                    ("EVENT", "event"),
                    ("STATUS", "status"),
                    ("ATTEMPTS", "attempts"),
                    ("LAST_ERROR", "last_error"),
                ],
            );
        }
        WebhooksCommand::Events { file_id, json } => {
            let query: Vec<(&str, &str)> =
                file_id.iter().map(|f| ("file_id", f.as_str())).collect();
            let v = api
                .call_with_query(Method::GET, &["v1", "api", "webhooks", "events"], &query)
                .await?;
            print_list(
                &v,
                json,
                "events",
                &[
                    ("EVENT_ID", "id"),
                    ("EVENT", "event"),
                    ("FORMAT", "format"),
                    ("CREATED_AT", "created_at"),
                    ("FILE_ID", "file_id"),
                ],
            );
        }
        WebhooksCommand::Attempts { event_id, json } => {
            let v = api
                .call(
                    Method::GET,
                    &["v1", "api", "webhooks", "events", &event_id, "attempts"],
                    None,
                )
                .await?;
            print_list(
                &v,
                json,
                "attempts",
                &[
                    ("ATTEMPT", "attempt"),
                    ("AT", "attempted_at"),
                    ("STATUS", "status_code"),
                    ("LATENCY_MS", "latency_ms"),
                    ("ERROR", "error"),
                    ("URL", "url"),
                ],
            );
        }
        WebhooksCommand::Redeliver { event_id } => {
            let v = api
                .call(
                    Method::POST,
                    &["v1", "api", "webhooks", "events", &event_id, "redeliver"],
                    None,
                )
                .await?;
            println!("{v}");
        }
    }
    Ok(())
}
