#[conductor::worker]
fn square(n: u64) -> anyhow::Result<u64> {
    Ok(n * n)
}

// The worker takes a u64, not a String: a compile error, not a handshake error.
fn wrong() -> conductor::Conductor<String, u64> {
    conductor::Conductor::of::<square>()
}

#[conductor::main]
async fn main() -> anyhow::Result<()> {
    let _ = wrong();
    Ok(())
}
