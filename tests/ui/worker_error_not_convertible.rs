#[conductor::worker(type = "square")]
fn square(n: u64) -> Result<u64, ()> {
    Ok(n * n)
}

fn main() {}
