//! `refinery::embed_migrations!` reads `migrations/` at compile time; without this, adding a
//! migration file would not rebuild the binary, and `--mode migrate` would silently skip it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
