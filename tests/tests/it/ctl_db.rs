//! `chatctl db` against real databases, as an operator who turned automatic migrations off
//! meets it: chatd refuses a database whose schema is behind, `chatctl db status` lists the
//! pending migrations, `chatctl db migrate` applies them (SQLite and PostgreSQL), and chatd
//! then starts without migrating.

use std::path::Path;
use std::process::Stdio;

use chatd_config::Overrides;
use chatd_tests::TestPostgres;
use chatd_tests::binaries::binary;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn db_migrate_readies_a_sqlite_database_for_a_chatd_that_does_not_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("chatd.db");
    let config = write_config(dir.path(), "");
    migrate_then_start(&config, &format!("SQLite database {}", database.display())).await;
    assert!(database.exists());
}

#[tokio::test]
async fn db_migrate_readies_a_postgres_database_for_a_chatd_that_does_not_migrate() {
    let postgres = TestPostgres::shared().await;
    let url = postgres.create_database().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &format!("url = {url:?}\n"));
    let database = url.rsplit('/').next().unwrap();
    let name = format!(
        "PostgreSQL database {database} on 127.0.0.1:{}",
        postgres.port()
    );
    migrate_then_start(&config, &name).await;
}

#[tokio::test]
async fn db_status_leaves_a_missing_sqlite_file_alone_and_an_unreachable_database_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let (code, out, err) = chatctl(&config, &["db", "status"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(not created yet)"), "{out}");
    assert!(out.contains("pending"), "{out}");
    assert!(!dir.path().join("chatd.db").exists());

    // Nothing listens on port 1 of the loopback address.
    let unreachable = write_config(dir.path(), "url = \"postgres://chatd@127.0.0.1:1/chatd\"\n");
    let (code, _, err) = chatctl(&unreachable, &["db", "migrate"]).await;
    assert_eq!(code, 3, "{err}");
    assert!(
        err.starts_with("chatctl: cannot open the PostgreSQL database chatd on 127.0.0.1:1: "),
        "{err}"
    );
    assert!(
        !err.contains("postgres://"),
        "the URL may hold a password: {err}"
    );
}

/// Checks that chatd refuses the unmigrated database of `config_file`, that `db status` and
/// `db migrate` report and apply the pending migrations of the database called `name`, and
/// that chatd then starts.
async fn migrate_then_start(config_file: &Path, name: &str) {
    let config = chatd_config::load(&Overrides {
        config_file: Some(config_file.to_owned()),
        ..Overrides::default()
    })
    .unwrap();
    assert!(!config.store.run_migrations);
    let Err(refused) = chatd::start(&config, CancellationToken::new()).await else {
        panic!("chatd started on an unmigrated database");
    };
    assert!(
        refused.to_string().contains("chatctl db migrate"),
        "{refused}"
    );

    let (code, out, err) = chatctl(config_file, &["db", "status"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("{name}\nVERSION  DESCRIPTION ")),
        "{out}"
    );
    let schema = out.lines().find(|line| line.starts_with("1 ")).unwrap();
    assert!(
        schema.contains("schema") && schema.ends_with("pending"),
        "{out}"
    );
    let pending = out
        .lines()
        .filter(|line| line.ends_with(" pending"))
        .count();
    assert!(
        out.contains(&format!(
            "\n{pending} pending: apply with `chatctl db migrate`"
        )),
        "{out}"
    );

    let (code, out, err) = chatctl(config_file, &["db", "migrate"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("{name}\napplied 1 schema\n")),
        "{out}"
    );
    let applied = out
        .lines()
        .filter(|line| line.starts_with("applied "))
        .count();
    assert_eq!(applied, pending, "{out}");
    assert!(out.contains("\nthe schema is up to date ("), "{out}");

    let (code, out, err) = chatctl(config_file, &["--json", "db", "migrate"]).await;
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["applied_now"], serde_json::json!([]), "{out}");
    let states = report["migrations"].as_array().unwrap();
    assert!(states.iter().all(|m| m["state"] == "applied"), "{out}");

    let token = CancellationToken::new();
    let daemon = chatd::start(&config, token.clone())
        .await
        .expect("chatd starts on the migrated database without migrating");
    token.cancel();
    daemon.wait().await;
}

/// Writes a configuration with `data_dir` = `dir`, automatic migrations off and `store_keys`
/// (TOML lines) in `[store]`; returns its path.
fn write_config(dir: &Path, store_keys: &str) -> std::path::PathBuf {
    let path = dir.join(format!("chatd-{}.toml", store_keys.len()));
    let text = format!(
        "data_dir = {:?}\n\n[listen]\nwebsocket = \"127.0.0.1:0\"\nquic = \"127.0.0.1:0\"\n\n[store]\nrun_migrations = \
         false\n{store_keys}",
        dir.to_str().unwrap()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `chatctl --config CONFIG ARGS`; returns (exit code, stdout, stderr).
async fn chatctl(config: &Path, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(binary("chatctl"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("CHATD_CONFIG")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
