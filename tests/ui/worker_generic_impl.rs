struct Echo<T>(T);

#[conductor::worker(type = "echo")]
impl<T: serde::Serialize + serde::de::DeserializeOwned + 'static> conductor::JobWorker for Echo<T> {
    type Job = T;
    type Output = T;

    async fn init(_worker: &conductor::Worker) -> anyhow::Result<Self> {
        unimplemented!()
    }

    async fn process(&mut self, job: T, _worker: &conductor::Worker) -> anyhow::Result<T> {
        Ok(job)
    }
}

fn main() {}
