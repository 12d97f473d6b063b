#[derive(Debug)]
struct Square;

#[conductor::worker(type = "square")]
impl Default for Square {
    fn default() -> Self {
        Square
    }
}

fn main() {
    let _ = Square::default();
}
