//! Rebuilds when a migration is added: `sqlx::migrate!` embeds the shared `migrations/` folder.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
