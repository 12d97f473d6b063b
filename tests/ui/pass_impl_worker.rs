use conductor::JobWorker;

struct Counter {
    total: usize,
}

#[conductor::worker(type = "x")]
impl conductor::JobWorker for Counter {
    type Job = String;
    type Output = usize;

    async fn init(_w: &conductor::Worker) -> anyhow::Result<Self> {
        Ok(Counter { total: 0 })
    }

    async fn process(&mut self, job: String, _w: &conductor::Worker) -> anyhow::Result<usize> {
        self.total += job.len();
        Ok(self.total)
    }
}

// The trait may also be named through an import.
struct Doubler;

#[conductor::worker(type = "double")]
impl JobWorker for Doubler {
    type Job = u64;
    type Output = u64;

    async fn init(_w: &conductor::Worker) -> anyhow::Result<Self> {
        Ok(Doubler)
    }

    async fn process(&mut self, job: u64, _w: &conductor::Worker) -> anyhow::Result<u64> {
        Ok(job * 2)
    }
}

#[conductor::main]
fn main() {
    assert_eq!(<Counter as conductor::NamedWorker>::TYPE, "x");
    assert_eq!(<Doubler as conductor::NamedWorker>::TYPE, "double");
}
