#[conductor::worker(type = "add")]
fn add((a, b): (u64, u64)) -> anyhow::Result<u64> {
    Ok(a + b)
}

fn main() {}
