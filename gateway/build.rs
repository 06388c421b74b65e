//! Rebuilds the gateway when a migration is added: `sqlx::migrate!` embeds migrations/ at
//! compile time and does not track new files by itself.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
