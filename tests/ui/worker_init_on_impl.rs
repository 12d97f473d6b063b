use conductor::{JobWorker, Worker};

struct Stateful;

fn set_up(_worker: &Worker) -> anyhow::Result<()> {
    Ok(())
}

#[conductor::worker(type = "stateful", init = set_up)]
impl JobWorker for Stateful {
    type Job = u32;
    type Output = u32;

    async fn init(_worker: &Worker) -> anyhow::Result<Self> {
        Ok(Stateful)
    }

    async fn process(&mut self, job: u32, _worker: &Worker) -> anyhow::Result<u32> {
        Ok(job)
    }
}

fn main() {}
