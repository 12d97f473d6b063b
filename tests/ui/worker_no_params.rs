#[conductor::worker(type = "tick")]
fn tick() -> anyhow::Result<u64> {
    Ok(1)
}

fn main() {}
