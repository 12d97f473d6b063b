#[conductor::worker(type = "length")]
fn length(text: &str) -> anyhow::Result<usize> {
    Ok(text.len())
}

fn main() {}
