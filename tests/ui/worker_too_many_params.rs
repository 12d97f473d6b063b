#[conductor::worker(type = "scale")]
fn scale(n: u64, _worker: &conductor::Worker, factor: u64) -> anyhow::Result<u64> {
    Ok(n * factor)
}

fn main() {}
