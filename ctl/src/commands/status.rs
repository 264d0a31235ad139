//! `chatctl status`: what the daemon reports about itself.

use protocol::admin::{AdminReply, AdminRequest, StatusInfo};

use super::{Hints, check, unexpected};
use crate::admin_client::Admin;
use crate::failure::Failure;
use crate::output::{Output, duration};

pub(super) async fn run(admin: &mut Admin, output: Output) -> Result<(), Failure> {
    let hints = Hints {
        not_found: "",
        already_exists: "",
    };
    let reply = check(admin.request(&AdminRequest::Status).await?, hints)?;
    let AdminReply::Status(status) = &reply else {
        return Err(unexpected("status", &reply));
    };
    output.print(&reply, || human(status));
    Ok(())
}

/// One `label  value` line per fact, labels padded to one width.
fn human(status: &StatusInfo) -> String {
    // The mean batch size says how well group commit is working: 1 means every send paid
    // for its own transaction.
    let batches = match status.store_commits {
        0 => "no commits yet".to_owned(),
        commits => format!(
            "{commits} commits, {:.1} sends per commit",
            status.store_committed_sends as f64 / commits as f64
        ),
    };
    let connections = status
        .connections
        .iter()
        .map(|entry| format!("{} {}", entry.connections, entry.transport))
        .collect::<Vec<_>>()
        .join(", ");
    // An older daemon reports no health; say so rather than print nothing.
    let reported = |value: &str| {
        if value.is_empty() {
            "not reported".to_owned()
        } else {
            value.to_owned()
        }
    };
    let mut lines = vec![
        ("version", status.version.clone()),
        ("uptime", duration(status.uptime_secs)),
        ("sessions", status.sessions.to_string()),
        ("connections", connections),
        ("listeners", status.listeners.join(", ")),
        (
            "store",
            format!("{} ({})", status.store, reported(&status.store_health)),
        ),
        ("broker", reported(&status.broker)),
        ("batches", batches),
        (
            "draining",
            if status.draining {
                "yes: shutting down, not accepting connections".to_owned()
            } else {
                "no".to_owned()
            },
        ),
    ];
    if !status.pending_restart.is_empty() {
        lines.push((
            "pending restart",
            format!(
                "{} (changed in the file; restart chatd to apply)",
                status.pending_restart.join(", ")
            ),
        ));
    }
    let width = lines
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0);
    lines
        .into_iter()
        .map(|(label, value)| format!("{label:width$}  {value}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use protocol::admin::TransportConnections;

    use super::*;

    fn status() -> StatusInfo {
        StatusInfo {
            version: "0.1.0".to_owned(),
            uptime_secs: 3_725,
            sessions: 2,
            listeners: vec!["ws://127.0.0.1:7878".to_owned()],
            store: "sqlite".to_owned(),
            store_commits: 4,
            store_committed_sends: 10,
            connections: vec![TransportConnections {
                transport: "websocket".to_owned(),
                connections: 3,
            }],
            store_health: "ok".to_owned(),
            broker: "ok".to_owned(),
            draining: false,
            pending_restart: Vec::new(),
        }
    }

    #[test]
    fn lists_every_fact_aligned() {
        assert_eq!(
            human(&status()),
            "version      0.1.0\n\
             uptime       1h 2m 5s\n\
             sessions     2\n\
             connections  3 websocket\n\
             listeners    ws://127.0.0.1:7878\n\
             store        sqlite (ok)\n\
             broker       ok\n\
             batches      4 commits, 2.5 sends per commit\n\
             draining     no\n"
        );
    }

    #[test]
    fn shows_trouble_and_pending_restarts() {
        let status = StatusInfo {
            store_health: "store unavailable during room: pool timed out".to_owned(),
            draining: true,
            pending_restart: vec!["store.url".to_owned(), "listen.metrics".to_owned()],
            ..status()
        };
        let text = human(&status);
        assert!(
            text.contains(
                "store            sqlite (store unavailable during room: pool timed out)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("draining         yes: shutting down, not accepting connections\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "pending restart  store.url, listen.metrics (changed in the file; restart chatd \
                 to apply)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_older_daemon_without_health_says_so() {
        let old =
            r#"{"version":"0.1.0","uptime_secs":1,"sessions":0,"listeners":[],"store":"sqlite"}"#;
        let status: StatusInfo = serde_json::from_str(old).unwrap();
        let text = human(&status);
        assert!(
            text.contains("store        sqlite (not reported)\n"),
            "{text}"
        );
        assert!(text.contains("broker       not reported\n"), "{text}");
    }
}
