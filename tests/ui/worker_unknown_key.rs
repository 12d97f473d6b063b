#[conductor::worker(type = "square", retries = 3)]
fn square(n: u64) -> anyhow::Result<u64> {
    Ok(n * n)
}

fn main() {}
