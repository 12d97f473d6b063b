#[conductor::worker(type = "square", type = "square2")]
fn square(n: u64) -> anyhow::Result<u64> {
    Ok(n * n)
}

fn main() {}
