#[conductor::worker(type = "")]
fn square(n: u64) -> anyhow::Result<u64> {
    Ok(n * n)
}

fn main() {}
