#[conductor::worker(type = "square")]
fn square(n: u64, _worker: conductor::Worker) -> anyhow::Result<u64> {
    Ok(n * n)
}

fn main() {}
