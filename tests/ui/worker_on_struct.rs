#[conductor::worker(type = "square")]
struct Square;

fn main() {}
