struct Square;

#[conductor::worker(type = "square")]
impl Square {
    fn process(&mut self, n: u64) -> anyhow::Result<u64> {
        Ok(n * n)
    }
}

fn main() {
    let _ = Square;
}
