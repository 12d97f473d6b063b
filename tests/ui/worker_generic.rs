#[conductor::worker(type = "identity")]
fn identity<T>(job: T) -> anyhow::Result<T> {
    Ok(job)
}

fn main() {}
