//! Rebuilds chatctl when a daemon migration is added or changed, so the migrations that
//! `chatctl db migrate` embeds (`sqlx::migrate!`) are always the daemon's current ones.

fn main() {
    println!("cargo:rerun-if-changed=../daemon/migrations");
}
